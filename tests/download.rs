//! Downloads against an HTTP server on the loopback address that each test
//! starts (no test needs the internet): the right bytes, a wrong checksum,
//! a server error, a connection cut half way and its resumption, a closed
//! port, and a Hugging Face model repository fetched by name.
#![cfg(feature = "hub")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use zeroformer::Error;
use zeroformer::hub::{Hub, download, sha256_of};

/// How the server answers one request.
#[derive(Clone, Copy)]
enum Answer {
    /// The file (or from a `Range` request's start, as 206).
    Serve,
    /// The headers of the whole file, half its bytes, then a closed socket.
    CutHalfWay,
    /// A status with an empty body.
    Status(u16),
}

/// The requests a test server saw: each path and its Range start, if any.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A one-thread HTTP/1.1 server with `files` (path -> bytes), answering
/// the n-th request as `script[n]` (the last answer repeats). Returns its
/// address and the requests it saw (path and Range header).
fn serve(files: Vec<(String, Vec<u8>)>, script: Vec<Answer>) -> (String, Seen) {
    serve_with_etags(files, script, Vec::new())
}

/// [`serve`], answering a HEAD request as the Hugging Face hub does: for a
/// path in `etags`, a redirect carrying `X-Linked-Etag: "<etag>"` (a file
/// in Git LFS); for another file, its headers. HEAD requests are not
/// counted in the script.
fn serve_with_etags(
    files: Vec<(String, Vec<u8>)>,
    script: Vec<Answer>,
    etags: Vec<(String, String)>,
) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut range = None;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(value.trim().trim_end_matches('-').to_string());
                }
            }
            log.lock().unwrap().push((path.clone(), range.clone()));
            let file = files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, b)| b.clone());
            if request.starts_with("HEAD ") {
                let etag = etags.iter().find(|(p, _)| *p == path);
                let response = match (etag, &file) {
                    (Some((_, tag)), _) => format!(
                        "HTTP/1.1 302 Found\r\nLocation: {path}?cdn\r\nX-Linked-Etag: \"{tag}\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    (None, Some(bytes)) => format!(
                        "HTTP/1.1 200 OK\r\nETag: \"0123abcd\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    ),
                    (None, None) => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .into()
                    }
                };
                let _ = stream.write_all(response.as_bytes());
                continue;
            }
            let answer = script[n.min(script.len() - 1)];
            n += 1;
            let response = match (answer, file) {
                (Answer::Status(code), _) => format!(
                    "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .into_bytes(),
                (_, None) => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
                (Answer::CutHalfWay, Some(bytes)) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&bytes[..bytes.len() / 2]);
                    r
                }
                (Answer::Serve, Some(bytes)) => {
                    match range.and_then(|r| r.parse::<usize>().ok()) {
                        Some(start) => {
                            let mut r = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                            bytes.len() - start,
                            bytes.len() - 1,
                            bytes.len()
                        )
                        .into_bytes();
                            r.extend_from_slice(&bytes[start..]);
                            r
                        }
                        None => {
                            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len()).into_bytes();
                            r.extend_from_slice(&bytes);
                            r
                        }
                    }
                }
            };
            let _ = stream.write_all(&response);
            let _ = stream.flush();
        }
    });
    (address, seen)
}

/// 300 KB that are not all alike.
fn payload() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn sha256(bytes: &[u8], dir: &Path) -> String {
    let path = dir.join("hash-me");
    std::fs::write(&path, bytes).unwrap();
    sha256_of(&path).unwrap()
}

#[test]
fn the_right_bytes_arrive_checked_and_nothing_else_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = payload();
    let digest = sha256(&bytes, dir.path());
    let (url, _) = serve(vec![("/f".into(), bytes.clone())], vec![Answer::Serve]);
    let dest = dir.path().join("sub/file.bin");
    let mut calls = 0;
    download(
        &format!("{url}/f"),
        &dest,
        Some(&digest),
        &mut |done, total| {
            calls += 1;
            assert_eq!(total, Some(300_000));
            assert!(done <= 300_000);
        },
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert!(calls > 0);
    assert!(!dir.path().join("sub/file.bin.partial").exists());
}

#[test]
fn a_wrong_checksum_is_an_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(vec![("/f".into(), payload())], vec![Answer::Serve]);
    let dest = dir.path().join("file.bin");
    let wrong = "0".repeat(64);
    let err = download(&format!("{url}/f"), &dest, Some(&wrong), &mut |_, _| {}).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{message}");
    assert!(
        message.contains("not the published") && message.contains("removed"),
        "{message}"
    );
    assert!(!dest.exists());
    assert!(!dir.path().join("file.bin.partial").exists());
}

#[test]
fn a_server_error_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(vec![("/f".into(), payload())], vec![Answer::Status(500)]);
    let dest = dir.path().join("file.bin");
    let message = download(&format!("{url}/f"), &dest, None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(message.contains("answered 500"), "{message}");
    assert!(!dest.exists());
}

#[test]
fn a_connection_cut_half_way_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = payload();
    let digest = sha256(&bytes, dir.path());
    let (url, seen) = serve(
        vec![("/f".into(), bytes.clone())],
        vec![Answer::CutHalfWay, Answer::Serve],
    );
    let (url, dest) = (format!("{url}/f"), dir.path().join("file.bin"));
    let message = download(&url, &dest, Some(&digest), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(message.contains("run again to resume"), "{message}");
    assert!(!dest.exists(), "a half-written file took the final name");
    let partial = dir.path().join("file.bin.partial");
    assert_eq!(std::fs::read(&partial).unwrap(), bytes[..150_000]);
    download(&url, &dest, Some(&digest), &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    // The second request asked only for the rest.
    assert_eq!(seen.lock().unwrap()[1].1.as_deref(), Some("150000"));
}

#[test]
fn an_unreachable_server_is_one_line_saying_what_to_check() {
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let message = download(
        &format!("http://127.0.0.1:{port}/f"),
        &dir.path().join("f"),
        None,
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("offline") && !message.contains('\n'),
        "{message}"
    );
}

#[test]
fn a_model_repository_is_fetched_by_name_once() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_gpt2_tiny");
    let file = |name: &str| std::fs::read(fixture.join(name)).unwrap();
    let repo = "/org/tiny-gpt2/resolve/main";
    let (url, seen) = serve(
        vec![
            (format!("{repo}/config.json"), file("config.json")),
            (
                format!("{repo}/model.safetensors"),
                file("model.safetensors"),
            ),
        ],
        vec![Answer::Serve],
    );
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(url, cache.path());
    let mut files = Vec::new();
    let dir = hub
        .model("org/tiny-gpt2", &mut |name, _, _| {
            if files.last().is_none_or(|f: &String| f != name) {
                files.push(name.to_string())
            }
        })
        .unwrap();
    assert_eq!(files, ["config.json", "model.safetensors"]);
    let model = zeroformer::Gpt::from_pretrained(&dir, &zeroformer::Device::Cpu).unwrap();
    assert_eq!(model.config.vocab_size, 96);
    // The optional tokenizer files were asked for and missing (a HEAD for
    // the published hash, then the file); a second call needs nothing
    // from the server.
    let requests = seen.lock().unwrap().len();
    assert_eq!(requests, 2 * (2 + 4));
    hub.model("org/tiny-gpt2", &mut |_, _, _| {}).unwrap();
    assert_eq!(seen.lock().unwrap().len(), requests);
    assert!(hub.model("../etc", &mut |_, _, _| {}).is_err());
}

#[test]
fn model_weights_are_checked_against_the_hash_the_hub_publishes() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_gpt2_tiny");
    let file = |name: &str| std::fs::read(fixture.join(name)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let weights = file("model.safetensors");
    let right = sha256(&weights, scratch.path());
    let wrong = sha256(b"other bytes", scratch.path());
    let files = |repo: &str| {
        vec![
            (
                format!("/org/{repo}/resolve/main/config.json"),
                file("config.json"),
            ),
            (
                format!("/org/{repo}/resolve/main/model.safetensors"),
                weights.clone(),
            ),
        ]
    };
    let mut all = files("good");
    all.extend(files("tampered"));
    let etags = vec![
        (
            "/org/good/resolve/main/model.safetensors".to_string(),
            right,
        ),
        (
            "/org/tampered/resolve/main/model.safetensors".to_string(),
            wrong.clone(),
        ),
    ];
    let (url, _) = serve_with_etags(all, vec![Answer::Serve], etags);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(url, cache.path());
    let dir = hub.model("org/good", &mut |_, _, _| {}).unwrap();
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
    let err = hub.model("org/tampered", &mut |_, _, _| {}).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&wrong) && message.contains("SHA-256"),
        "{message}"
    );
    let folder = cache.path().join("org--tampered");
    let left: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.iter().any(|n| n == "config.json"), "{left:?}");
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().contains("safetensors")),
        "nothing of the rejected weights is left: {left:?}"
    );
}
