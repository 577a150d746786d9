//! The CPU kernel level: what fixes a CPU run's bits, recorded in its provenance, and the
//! microkernel of lecal's matrix product (`gemm/`).
//!
//! Some of a CPU run's arithmetic is chosen at run time from the CPU's features:
//! - lecal's matrix product: its microkernels give the same bits by construction (one
//!   chain of fused multiply-adds per element), so the choice is speed only; the AVX-512
//!   one is an explicit opt-in all the same (`--cpu-kernels avx512`, recorded in a run's
//!   provenance), as a CPU without AVX-512 cannot test it;
//! - candle's sums along a row (`sum`, softmax, the loss): an 8-lane AVX2 loop where the
//!   CPU has AVX2 (NEON on aarch64), else a scalar one; it has no AVX-512 path;
//! - glibc's `exp`, `log`, `pow`, `sin`, `cos` …: variants compiled with FMA where the CPU
//!   has FMA and AVX2, else SSE2 ones; none for AVX-512;
//! - zune-jpeg's colour conversion and IDCT (ImageNet): AVX2 where the CPU has it, else
//!   SSE or scalar; none for AVX-512;
//! - `half`'s f32 → f16 conversion of the stored logits: F16C where present, else
//!   software, both rounding to nearest even (the same bits either way);
//! - SHA-256 (SHA-NI) and the allocator touch no number.
//!
//! So every x86-64 CPU with AVX2 and FMA computes the same bits, whatever else it has
//! (AVX-512, AMX, more cores): that level is x86-64-v3. Other CPUs have levels of their
//! own. `CpuLevel::of` and `Microkernel::choose` are pure functions of the detected
//! features, so the tests can inject them: AVX-512 changes neither the level nor, unless
//! asked for, the kernel.

use std::fmt;

/// The CPU features that change arithmetic somewhere in a run (see the module's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    /// Only for the opt-in AVX-512 microkernel: nothing lecal runs by default uses it.
    pub avx512f: bool,
}

impl CpuFeatures {
    /// This CPU's.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx2: std::is_x86_feature_detected!("avx2"),
                fma: std::is_x86_feature_detected!("fma"),
                avx512f: std::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::default()
    }
}

/// The kernel level of a CPU: CPUs of one level compute the same bits for the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuLevel {
    /// x86-64 with AVX2 and FMA, with or without AVX-512.
    X86_64V3,
    /// x86-64 without AVX2 or FMA: candle's scalar sums and glibc's SSE2 functions.
    X86_64,
    /// Another architecture (`std::env::consts::ARCH`), e.g. aarch64 with NEON sums.
    Other(&'static str),
}

impl CpuLevel {
    /// The level of a CPU of architecture `arch` with `features`.
    pub fn of(arch: &'static str, features: CpuFeatures) -> Self {
        match arch {
            "x86_64" if features.avx2 && features.fma => Self::X86_64V3,
            "x86_64" => Self::X86_64,
            other => Self::Other(other),
        }
    }

    /// This machine's level.
    pub fn detect() -> Self {
        Self::of(std::env::consts::ARCH, CpuFeatures::detect())
    }
}

impl fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::X86_64V3 => "x86-64-v3",
            Self::X86_64 => "x86-64",
            Self::Other(arch) => arch,
        })
    }
}

/// The microkernel of lecal's matrix product. All give the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Microkernel {
    /// AVX2 + FMA vectors (x86-64-v3): the default where the CPU has both.
    Avx2Fma,
    /// AVX-512 vectors, twice as wide: only when asked for.
    Avx512,
    /// Plain Rust, one `mul_add` per element and step: any CPU.
    Portable,
}

/// What the user asked for (`--cpu-kernels`, `LECAL_CPU_KERNELS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CpuKernelChoice {
    /// AVX2 + FMA where the CPU has both, else portable Rust.
    #[default]
    Auto,
    /// AVX-512 (an x86-64 CPU with AVX-512F): faster there, the same bits.
    Avx512,
    /// Portable Rust on every CPU: slower, the same bits (to rule out a SIMD kernel).
    Portable,
}

impl Microkernel {
    /// The microkernel `choice` means on an `arch` CPU with `features`; an error where
    /// the CPU lacks what was asked for.
    pub fn choose(
        choice: CpuKernelChoice,
        arch: &str,
        features: CpuFeatures,
    ) -> Result<Self, String> {
        let x86 = arch == "x86_64";
        match choice {
            CpuKernelChoice::Auto if x86 && features.avx2 && features.fma => Ok(Self::Avx2Fma),
            CpuKernelChoice::Auto | CpuKernelChoice::Portable => Ok(Self::Portable),
            CpuKernelChoice::Avx512 if x86 && features.avx512f => Ok(Self::Avx512),
            CpuKernelChoice::Avx512 => Err(format!(
                "--cpu-kernels avx512: this CPU ({arch}) has no AVX-512F; leave it at auto"
            )),
        }
    }

    /// The microkernel `choice` means on this machine.
    pub fn detect(choice: CpuKernelChoice) -> Result<Self, String> {
        Self::choose(choice, std::env::consts::ARCH, CpuFeatures::detect())
    }

    /// The default microkernel on this machine.
    pub fn auto() -> Self {
        Self::detect(CpuKernelChoice::Auto).expect("auto is always available")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avx2Fma => "avx2-fma",
            Self::Avx512 => "avx512",
            Self::Portable => "portable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(avx2: bool, fma: bool, avx512f: bool) -> CpuFeatures {
        CpuFeatures { avx2, fma, avx512f }
    }

    /// Issue 29: the level and the kernel an x86-64 CPU with AVX2 and FMA gets do not
    /// depend on whether it also has AVX-512.
    #[test]
    fn avx512_changes_neither_the_level_nor_the_kernel() {
        let (v3, v4) = (features(true, true, false), features(true, true, true));
        assert_eq!(CpuLevel::of("x86_64", v3), CpuLevel::X86_64V3);
        assert_eq!(CpuLevel::of("x86_64", v4), CpuLevel::X86_64V3);
        for choice in [CpuKernelChoice::Auto, CpuKernelChoice::Portable] {
            assert_eq!(
                Microkernel::choose(choice, "x86_64", v3),
                Microkernel::choose(choice, "x86_64", v4)
            );
        }
        assert_eq!(
            Microkernel::choose(CpuKernelChoice::Auto, "x86_64", v4),
            Ok(Microkernel::Avx2Fma)
        );
        assert_eq!(CpuLevel::X86_64V3.to_string(), "x86-64-v3");
    }

    #[test]
    fn cpus_without_avx2_or_fma_and_other_architectures_have_levels_of_their_own() {
        for f in [features(false, true, false), features(true, false, false)] {
            assert_eq!(CpuLevel::of("x86_64", f), CpuLevel::X86_64);
            assert_eq!(
                Microkernel::choose(CpuKernelChoice::Auto, "x86_64", f),
                Ok(Microkernel::Portable)
            );
        }
        let arm = CpuLevel::of("aarch64", CpuFeatures::default());
        assert_eq!(arm.to_string(), "aarch64");
        assert_eq!(
            Microkernel::choose(CpuKernelChoice::Auto, "aarch64", features(true, true, true)),
            Ok(Microkernel::Portable)
        );
    }

    #[test]
    fn portable_and_avx512_only_when_asked_for_and_avx512_only_where_it_runs() {
        let f = features(true, true, true);
        let choose = |c| Microkernel::choose(c, "x86_64", f);
        assert_eq!(choose(CpuKernelChoice::Portable), Ok(Microkernel::Portable));
        assert_eq!(choose(CpuKernelChoice::Avx512), Ok(Microkernel::Avx512));
        let err = Microkernel::choose(
            CpuKernelChoice::Avx512,
            "x86_64",
            features(true, true, false),
        );
        assert!(err.unwrap_err().contains("no AVX-512F"));
        assert!(Microkernel::choose(CpuKernelChoice::Avx512, "aarch64", f).is_err());
    }
}
