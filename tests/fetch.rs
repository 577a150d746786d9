//! `lecal data fetch` against a real HTTP server on localhost: archives in the real format
//! (`.tar.gz`), a transfer cut short and resumed with a range request, a server without
//! ranges, a wrong checksum. Nothing here touches the internet.

use lecal::data::fetch::{fetch, Patience, Source};
use md5::{Digest, Md5};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Serves `body` at every path: the first response cut after `cut` bytes when given,
/// range requests answered with 206 when `ranges`. Records each request's range start.
fn serve(
    body: Vec<u8>,
    cut: Option<usize>,
    ranges: bool,
) -> (String, Arc<Mutex<Vec<Option<u64>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut from = None;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    from = v.trim().trim_end_matches('-').parse::<u64>().ok();
                }
            }
            let first = log.lock().unwrap().is_empty();
            log.lock().unwrap().push(from);
            let n = body.len();
            let (head, part) = match from.filter(|_| ranges) {
                Some(f) => (
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {f}-{}/{n}\r\n",
                        n - f as usize,
                        n - 1
                    ),
                    &body[f as usize..],
                ),
                None => (format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n"), &body[..]),
            };
            let part = match cut.filter(|_| first) {
                Some(c) => &part[..c],
                None => part,
            };
            let _ = s.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
            let _ = s.write_all(part);
        }
    });
    (addr, seen)
}

/// A `.tar.gz` holding `toy/data.bin` (300 kB that do not compress away) and its MD5.
fn archive() -> (Vec<u8>, Vec<u8>, String) {
    let data: Vec<u8> = (0..300_000u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut tar = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "toy/data.bin", &data[..]).unwrap();
        tar.finish().unwrap();
    }
    let bytes = gz.finish().unwrap();
    let md5 = lecal::hash::hex(&Md5::digest(&bytes));
    (bytes, data, md5)
}

fn source(addr: &str, md5: &str) -> Source {
    Source {
        url: format!("{addr}/toy.tar.gz"),
        md5: md5.into(),
        folder: "toy".into(),
    }
}

/// One try, as a fetch that is not tried again.
fn once() -> Patience {
    Patience {
        attempts: 1,
        ..Patience::default()
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_cut_download_resumes_with_a_range_request_and_unpacks_only_when_whole() {
    let (bytes, data, md5) = archive();
    let cut = bytes.len() * 2 / 5;
    let (addr, seen) = serve(bytes.clone(), Some(cut), true);
    let d = tempfile::tempdir().unwrap();
    let e = fetch(&source(&addr, &md5), d.path(), false, &once()).unwrap_err();
    // The partial download stays for the next fetch; nothing is unpacked.
    assert_eq!(listing(d.path()), [".fetch"]);
    let part = d.path().join(".fetch/toy.tar.gz.part");
    let have = std::fs::metadata(&part).unwrap().len();
    assert!(have > 0 && have <= cut as u64, "{have} of {cut}");
    assert!(
        format!("{e:#}").contains(&format!("cut after {have} bytes")),
        "{e:#}"
    );
    let folder = fetch(&source(&addr, &md5), d.path(), false, &once()).unwrap();
    assert_eq!(*seen.lock().unwrap(), [None, Some(have)]);
    assert_eq!(std::fs::read(folder.join("data.bin")).unwrap(), data);
    assert_eq!(
        listing(d.path()),
        ["toy"],
        "the download and the work folder are gone"
    );
}

#[test]
fn a_server_without_ranges_starts_the_download_again() {
    let (bytes, data, md5) = archive();
    let (addr, seen) = serve(bytes.clone(), Some(1000), false);
    let d = tempfile::tempdir().unwrap();
    assert!(fetch(&source(&addr, &md5), d.path(), false, &once()).is_err());
    let folder = fetch(&source(&addr, &md5), d.path(), false, &once()).unwrap();
    // It asked for the rest; the server sent everything, which replaced the part.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() == 2 && seen[0].is_none() && seen[1].is_some(),
        "{seen:?}"
    );
    assert_eq!(std::fs::read(folder.join("data.bin")).unwrap(), data);
}

#[test]
fn a_wrong_checksum_removes_the_download_and_unpacks_nothing() {
    let (bytes, data, md5) = archive();
    let (addr, seen) = serve(bytes, None, true);
    let d = tempfile::tempdir().unwrap();
    let wrong = "0123456789abcdef0123456789abcdef";
    let e = format!(
        "{:#}",
        fetch(&source(&addr, wrong), d.path(), false, &once()).unwrap_err()
    );
    assert!(
        e.contains(&format!("its MD5 is {md5}, expected {wrong}")),
        "{e}"
    );
    assert!(listing(d.path()).is_empty(), "{:?}", listing(d.path()));
    // The next fetch starts clean, without a range.
    let folder = fetch(&source(&addr, &md5), d.path(), false, &once()).unwrap();
    assert_eq!(*seen.lock().unwrap(), [None, None]);
    assert_eq!(std::fs::read(folder.join("data.bin")).unwrap(), data);
}

/// The command checks the official MD5: a mirror serving anything else is refused, and
/// the data folder is left as it was.
#[test]
fn lecal_data_fetch_refuses_an_archive_that_is_not_the_official_one() {
    let (bytes, _, _) = archive();
    let (addr, _) = serve(bytes, None, true);
    let d = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("lecal")
        .unwrap()
        .env_remove("LECAL_DATA")
        .env("LECAL_DATA_MIRROR", &addr)
        .args([
            "data",
            "fetch",
            "cifar100",
            "--dir",
            d.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cifar-100-binary.tar.gz is not the expected archive")
            && err.contains("expected 03b5dce01913d631647c71ecec9e9cb8"),
        "{err}"
    );
    assert!(listing(d.path()).is_empty());
    let out = assert_cmd::Command::cargo_bin("lecal")
        .unwrap()
        .args(["data", "fetch", "mnist"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown dataset `mnist`, expected one of: cifar10, cifar100, stl10"));
}

/// Issue 30, class 3: a link planted at the partial download, or as the work folder, is
/// never written through: the first is replaced by the download, the second refused.
#[test]
fn a_link_planted_at_the_partial_download_is_replaced_not_written_through() {
    let (bytes, data, md5) = archive();
    let (addr, seen) = serve(bytes, None, true);
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::create_dir_all(d.path().join(".fetch")).unwrap();
    std::os::unix::fs::symlink(&victim, d.path().join(".fetch/toy.tar.gz.part")).unwrap();
    let folder = fetch(&source(&addr, &md5), d.path(), false, &once()).unwrap();
    // Downloaded whole from the start (no range asked of a link), the victim untouched.
    assert_eq!(*seen.lock().unwrap(), [None]);
    assert_eq!(std::fs::read(folder.join("data.bin")).unwrap(), data);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), d.path().join(".fetch")).unwrap();
    let e = fetch(&source(&addr, &md5), d.path(), false, &once()).unwrap_err();
    assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
    assert_eq!(listing(outside.path()), ["victim"]);
}

/// Issue 30, class 5: a server that accepts and then stays silent, after `head` when
/// given (headers without a body). Counts the connections; keeps each one open.
fn silent(head: Option<&'static str>) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            *seen.lock().unwrap() += 1;
            if let Some(h) = head {
                let _ = s.write_all(h.as_bytes());
            }
            open.push(s);
        }
    });
    (addr, count)
}

fn quick(attempts: u32) -> Patience {
    Patience {
        connect: std::time::Duration::from_secs(2),
        read: std::time::Duration::from_millis(300),
        attempts,
        pause: std::time::Duration::from_millis(10),
    }
}

#[test]
fn a_server_that_never_answers_is_given_up_on_after_its_tries() {
    let (addr, count) = silent(None);
    let d = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let e = format!(
        "{:#}",
        fetch(&source(&addr, "x"), d.path(), false, &quick(3)).unwrap_err()
    );
    assert!(
        e.contains("no answer from") && e.contains("within 0.3 s"),
        "{e}"
    );
    assert!(e.contains("gave up after 3 tries"), "{e}");
    assert_eq!(*count.lock().unwrap(), 3);
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn headers_without_a_body_stall_and_are_given_up_on() {
    let (addr, count) = silent(Some("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"));
    let d = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        fetch(&source(&addr, "x"), d.path(), false, &quick(2)).unwrap_err()
    );
    assert!(
        e.contains("stalled: no data for 0.3 s after 0 bytes"),
        "{e}"
    );
    assert!(e.contains("run the same command again to resume it"), "{e}");
    assert_eq!(*count.lock().unwrap(), 2);
}

#[test]
fn a_cut_download_is_tried_again_and_resumed_within_one_fetch() {
    let (bytes, data, md5) = archive();
    let (addr, seen) = serve(bytes.clone(), Some(bytes.len() / 3), true);
    let d = tempfile::tempdir().unwrap();
    let folder = fetch(&source(&addr, &md5), d.path(), false, &quick(2)).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() == 2 && seen[0].is_none() && seen[1].is_some(),
        "{seen:?}"
    );
    assert_eq!(std::fs::read(folder.join("data.bin")).unwrap(), data);
}

/// The command says what it waits for, and gives up with a non-zero exit.
#[test]
fn lecal_data_fetch_says_what_it_waits_for_and_gives_up() {
    let (addr, _) = silent(None);
    let d = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("lecal")
        .unwrap()
        .env("LECAL_DATA_MIRROR", &addr)
        .args(["data", "fetch", "cifar10", "--timeout", "1", "--tries", "2"])
        .arg("--dir")
        .arg(d.path())
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("waiting up to 1 s to connect and 1 s for each answer"),
        "{err}"
    );
    assert!(err.contains("trying again in 2 s (try 2 of 2)"), "{err}");
    assert!(
        err.contains("no answer from") && err.contains("gave up after 2 tries"),
        "{err}"
    );
}
