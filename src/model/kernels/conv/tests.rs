//! lecal's convolution against candle's on random shapes: the forward pass and both
//! gradients, stride 1 and 2, padding 0 to 2, 1×1, 3×3, 5×5 and 1×3 kernels, batch 1 to
//! 64.

use super::*;
use crate::model::kernels::common::{random, values};
use crate::rng::Rng;
use candle_core::Var;

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "{what}[{i}]: {a} vs {b} (scale {scale})"
        );
    }
}

/// Output, input gradient and weight gradient of `conv` under the loss Σ y·m for a random
/// mask m.
fn run(
    conv: impl Fn(&Tensor, &Tensor) -> Tensor,
    x: &Tensor,
    w: &Tensor,
    m: &Tensor,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
    let y = conv(xv.as_tensor(), wv.as_tensor());
    let loss = (&y * m).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    (
        values(&y),
        values(g.get(xv.as_tensor()).unwrap()),
        values(g.get(wv.as_tensor()).unwrap()),
    )
}

#[test]
fn matches_candles_convolution_in_all_three_passes() {
    // (n, c, h, w, k, (kernel height, width), stride, pad)
    let cases = [
        (1, 3, 8, 8, 4, (3, 3), 1, 1),
        (64, 4, 8, 8, 8, (3, 3), 1, 1),
        (64, 4, 8, 8, 8, (3, 3), 2, 1),
        (2, 5, 7, 9, 3, (3, 3), 2, 1),
        (3, 8, 6, 6, 16, (1, 1), 2, 0),
        (5, 6, 5, 5, 7, (1, 1), 1, 0),
        (2, 3, 9, 9, 4, (3, 3), 1, 0),
        (2, 2, 4, 4, 3, (3, 3), 1, 2),
        (7, 3, 3, 3, 2, (3, 3), 2, 2),
        (1, 3, 32, 32, 16, (3, 3), 1, 1),
        // Stride 1 with OW = W (one shifted copy per kernel offset), non-square images,
        // a 5×5 kernel, and a 1×3 kernel whose output is taller than its input.
        (3, 4, 5, 7, 6, (3, 3), 1, 1),
        (2, 3, 6, 6, 4, (5, 5), 1, 2),
        (2, 3, 4, 6, 5, (1, 3), 1, 1),
        // The last stage of a ResNet-18 on 32×32 crops: 2×2 and 1×1 planes, where some
        // kernel offsets see nothing but padding.
        (2, 4, 1, 1, 3, (3, 3), 1, 1),
        (2, 4, 2, 2, 3, (3, 3), 1, 1),
        (2, 4, 2, 2, 3, (3, 3), 2, 1),
        (2, 4, 1, 2, 3, (3, 3), 1, 1),
    ];
    let mut rng = Rng::new(11);
    for (n, c, h, wd, k, (kh, kw), stride, pad) in cases {
        let x = random(&[n, c, h, wd], &mut rng);
        let w = random(&[k, c, kh, kw], &mut rng);
        let g = Geometry::new(x.dims(), w.dims(), stride, pad).unwrap();
        let m = random(&[n, k, g.oh, g.ow], &mut rng);
        let ours = run(
            |x, w| conv2d(x, w, stride, pad, Kernels::lecal()).unwrap(),
            &x,
            &w,
            &m,
        );
        let theirs = run(|x, w| x.conv2d(w, pad, stride, 1, 1).unwrap(), &x, &w, &m);
        let what = format!("n{n} c{c} {h}x{wd} k{k} {kh}x{kw} stride {stride} pad {pad}");
        close(&format!("{what} output"), &ours.0, &theirs.0);
        close(&format!("{what} input gradient"), &ours.1, &theirs.1);
        close(&format!("{what} weight gradient"), &ours.2, &theirs.2);
    }
}

#[test]
fn gradients_do_not_depend_on_the_thread_count() {
    let mut rng = Rng::new(5);
    let x = random(&[37, 6, 8, 8], &mut rng);
    let w = random(&[5, 6, 3, 3], &mut rng);
    let g = Geometry::new(x.dims(), w.dims(), 1, 1).unwrap();
    let dy = random(&[37, 5, 8, 8], &mut rng);
    let (xs, ws, dys) = (values(&x), values(&w), values(&dy));
    let k = Kernels::lecal().gemm;
    let with = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                (
                    forward(&xs, &ws, &g, 1, k),
                    backward(&xs, &ws, &dys, &g, 1, k),
                )
            })
    };
    assert_eq!(with(1), with(3));
}

#[test]
fn bad_shapes_are_errors() {
    assert!(Geometry::new(&[1, 3, 8, 8], &[4, 2, 3, 3], 1, 1).is_err());
    assert!(Geometry::new(&[1, 3, 2, 2], &[4, 3, 5, 5], 1, 0).is_err());
    assert!(Geometry::new(&[3, 8, 8], &[4, 3, 3, 3], 1, 1).is_err());
    assert!(Geometry::new(&[1, 3, 8, 8], &[4, 3, 3, 3], 0, 1).is_err());
}

/// Grouped convolutions (a fused network's) against candle's, which has PyTorch's
/// grouping: input channel group g with output channel group g.
#[test]
fn grouped_convolutions_match_candles_in_all_three_passes() {
    // (n, groups, channels per group in, out, size, stride, pad)
    let cases = [
        (4, 3, 16, 16, 3, 1, 1),
        (3, 2, 16, 32, 3, 2, 1),
        (2, 4, 8, 16, 1, 2, 0),
        (5, 5, 3, 2, 3, 1, 1),
    ];
    let mut rng = Rng::new(13);
    for (n, groups, cg, kg, size, stride, pad) in cases {
        let x = random(&[n, cg * groups, 6, 6], &mut rng);
        let w = random(&[kg * groups, cg, size, size], &mut rng);
        let g = grouped::group_geometry(x.dims(), w.dims(), stride, pad, groups).unwrap();
        let m = random(&[n, kg * groups, g.oh, g.ow], &mut rng);
        let lecal = |x: &Tensor, w: &Tensor| {
            conv2d_grouped(x, w, stride, pad, groups, Kernels::lecal()).unwrap()
        };
        let ours = run(lecal, &x, &w, &m);
        let theirs = run(
            |x, w| x.conv2d(w, pad, stride, 1, groups).unwrap(),
            &x,
            &w,
            &m,
        );
        let what = format!("n{n} {groups} groups of {cg}→{kg} {size}x{size} stride {stride}");
        close(&format!("{what} output"), &ours.0, &theirs.0);
        close(&format!("{what} input gradient"), &ours.1, &theirs.1);
        close(&format!("{what} weight gradient"), &ours.2, &theirs.2);
    }
    let bad = grouped::group_geometry(&[1, 6, 4, 4], &[4, 3, 3, 3], 1, 1, 4);
    assert!(bad.is_err());
}

/// Each group of a grouped convolution, run in place, gives the bits of that group's
/// convolution alone on its own contiguous input (output, input and weight gradients).
#[test]
fn each_group_in_place_has_the_bits_of_its_convolution_alone() {
    let k = Kernels::lecal().gemm;
    let mut rng = Rng::new(17);
    // (n, groups, channels per group in, out, size, stride, pad)
    for (n, groups, cg, kg, size, stride, pad) in [(9, 3, 16, 16, 3, 1, 1), (6, 2, 8, 16, 3, 2, 1)]
    {
        let x = values(&random(&[n, cg * groups, 8, 8], &mut rng));
        let w = values(&random(&[kg * groups, cg, size, size], &mut rng));
        let dims = ([n, cg * groups, 8, 8], [kg * groups, cg, size, size]);
        let g = grouped::group_geometry(&dims.0, &dims.1, stride, pad, groups).unwrap();
        let yg = g.k * g.ohw();
        let dy = values(&random(&[n, kg * groups, g.oh, g.ow], &mut rng));
        let y = forward(&x, &w, &g, groups, k);
        let both = backward(&x, &w, &dy, &g, groups, k);
        let (dx, dw) = both.split_at(x.len());
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let take = |v: &[f32], part: usize, q: usize| -> Vec<f32> {
            (v.chunks(part * groups))
                .flat_map(|img| img[q * part..(q + 1) * part].to_vec())
                .collect()
        };
        for q in 0..groups {
            let wq = &w[q * w.len() / groups..(q + 1) * w.len() / groups];
            let (xq, dyq) = (take(&x, g.chw(), q), take(&dy, yg, q));
            let alone = backward(&xq, wq, &dyq, &g, 1, k);
            let (adx, adw) = alone.split_at(xq.len());
            assert_eq!(bits(&take(&y, yg, q)), bits(&forward(&xq, wq, &g, 1, k)));
            assert_eq!(bits(&take(dx, g.chw(), q)), bits(adx), "group {q} dx");
            assert_eq!(bits(&dw[q * adw.len()..(q + 1) * adw.len()]), bits(adw));
        }
    }
}
