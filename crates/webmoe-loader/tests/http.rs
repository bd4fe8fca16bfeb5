//! The HTTP byte source and the parallel chunk scheduler against a local test server (127.0.0.1)
//! that injects faults: failing requests, connections dropped mid-chunk, no Range support, 404, and a
//! file that changes during the download. Every load ends with the exact file bytes or a clear error.
//! The same faults hit a Hugging Face folder served the same way (its shards' requests are the data
//! requests), opened through the one folder recipe (`Checkpoint::open`).

mod common;
use common::fixture_folder;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use webmoe_core::quant::GgmlType;
use webmoe_core::synthetic::SyntheticLlama;
use webmoe_loader::remote::FetchError;
use webmoe_loader::{
    read_gguf_header, stream_tensors, ByteSource, Checkpoint, HttpSource, LoadError, MemorySink,
    MemorySource,
};

#[derive(Default, Clone, Copy)]
struct Faults {
    /// Data requests (not the probe) answered 500 before the server behaves.
    fail_first: usize,
    /// Data request number (0-based) whose body is cut in half and the connection closed.
    drop_request: Option<usize>,
    /// Answer every request with 200 and the whole file.
    ignore_range: bool,
    /// Answer 404 (for a folder: for its shards).
    not_found: bool,
    /// From this data request on, the ETag changes.
    change_at: Option<usize>,
    /// Answer every request with an HTML page (a wrong URL's web page).
    html_page: bool,
}

struct Server {
    url: String,
    data_requests: Arc<AtomicUsize>,
}

fn serve(data: Vec<u8>, f: Faults) -> Server {
    let mut s = serve_files(HashMap::from([("model.gguf".to_string(), data)]), f);
    s.url.push_str("model.gguf");
    s
}

/// Serves `files` at `http://…/NAME` (the server's URL is the folder, ending in `/`); requests for
/// `.json` files are not data requests and see no faults but a missing file.
fn serve_files(files: HashMap<String, Vec<u8>>, f: Faults) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let files = Arc::new(files);
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (files, count) = (files.clone(), c.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut range = None;
                let mut path = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(rest) = line.strip_prefix("GET /") {
                        path = rest.split(' ').next().unwrap_or("").to_string();
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        let (a, b) = v.trim().split_once('-').unwrap();
                        range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
                    }
                }
                let Some(data) = files.get(&path) else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                };
                let json = path.ends_with(".json");
                let f = if json { Faults::default() } else { f };
                let probe = range == Some((0, 0)) || json;
                let n = if probe {
                    usize::MAX
                } else {
                    count.fetch_add(1, Ordering::SeqCst)
                };
                let etag = if f.change_at.is_some_and(|c| n != usize::MAX && n >= c) {
                    "\"v2\""
                } else {
                    "\"v1\""
                };
                let mut out = Vec::new();
                if f.html_page {
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\n<html></html>\r\n");
                } else if f.not_found {
                    out.extend_from_slice(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                } else if !probe && n < f.fail_first {
                    out.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                } else if let (false, Some((a, b))) = (f.ignore_range, range) {
                    let a = a.min(data.len() - 1);
                    let b = b.min(data.len() - 1);
                    write!(out, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n", data.len(), b + 1 - a).unwrap();
                    let body = &data[a..=b];
                    if f.drop_request == Some(n) {
                        out.extend_from_slice(&body[..body.len() / 2]);
                    } else {
                        out.extend_from_slice(body);
                    }
                } else {
                    write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n", data.len()).unwrap();
                    out.extend_from_slice(data);
                }
                let _ = stream.write_all(&out);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    Server {
        url,
        data_requests: count,
    }
}

fn model_bytes() -> Vec<u8> {
    SyntheticLlama {
        vocab: 256,
        hidden: 128,
        layers: 2,
        heads: 2,
        kv_heads: 1,
        ffn: 256,
        ty: GgmlType::Q8_0,
        untied: false,
        context: 64,
        seed: 4,
        experts: None,
    }
    .writer()
    .to_bytes()
}

/// Loads every tensor over HTTP in small chunks and checks the bytes against the file.
fn load_all(url: &str, data: &[u8], parallel: usize) -> Result<(), LoadError> {
    let src = HttpSource::open(url)?;
    let h = read_gguf_header(&src)?;
    let all: Vec<usize> = (0..h.tensors.len()).collect();
    let mut sink = MemorySink::default();
    let mut last = (0, 0);
    stream_tensors(&src, &h, &all, 3000, parallel, &mut sink, &mut |d, t| {
        last = (d, t)
    })?;
    assert_eq!(last.0, last.1, "progress reaches the total");
    for (i, t) in h.tensors.iter().enumerate() {
        let (s, e) = h.tensor_range(t);
        assert_eq!(
            sink.tensors[&i],
            &data[s as usize..e as usize],
            "tensor {}",
            t.name
        );
    }
    Ok(())
}

#[test]
fn chunked_parallel_load_gives_the_file_bytes() {
    let data = model_bytes();
    let s = serve(data.clone(), Faults::default());
    load_all(&s.url, &data, 4).unwrap();
    assert!(
        s.data_requests.load(Ordering::SeqCst) > 10,
        "many range requests"
    );
    let src = HttpSource::open(&s.url).unwrap();
    assert!(src.supports_ranges());
    assert_eq!(src.read_at(100, 50).unwrap(), &data[100..150]);
}

#[test]
fn failing_requests_are_retried() {
    let data = model_bytes();
    let s = serve(
        data.clone(),
        Faults {
            fail_first: 2,
            ..Default::default()
        },
    );
    load_all(&s.url, &data, 4).unwrap();
}

#[test]
fn a_connection_dropped_mid_chunk_is_retried() {
    let data = model_bytes();
    let s = serve(
        data.clone(),
        Faults {
            drop_request: Some(3),
            ..Default::default()
        },
    );
    load_all(&s.url, &data, 2).unwrap();
}

#[test]
fn a_server_that_ignores_range_still_works() {
    let data = model_bytes();
    let s = serve(
        data.clone(),
        Faults {
            ignore_range: true,
            ..Default::default()
        },
    );
    assert!(!HttpSource::open(&s.url).unwrap().supports_ranges());
    load_all(&s.url, &data, 4).unwrap();
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let s = serve(
        model_bytes(),
        Faults {
            not_found: true,
            ..Default::default()
        },
    );
    let e = HttpSource::open(&s.url).err().expect("an error");
    assert!(
        matches!(
            e,
            LoadError::Remote {
                error: FetchError::NotFound { status: 404 },
                attempts: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("HTTP 404"), "{e}");
}

#[test]
fn a_web_page_where_the_model_was_expected_says_so() {
    let s = serve(
        model_bytes(),
        Faults {
            html_page: true,
            ..Default::default()
        },
    );
    let e = HttpSource::open(&s.url).err().expect("an error");
    assert!(
        matches!(
            e,
            LoadError::Remote {
                error: FetchError::NotAModel { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("an HTML page"), "{e}");
}

#[test]
fn a_file_that_changes_during_the_download_is_detected() {
    let data = model_bytes();
    let s = serve(
        data.clone(),
        Faults {
            change_at: Some(5),
            ..Default::default()
        },
    );
    match load_all(&s.url, &data, 1) {
        Err(LoadError::Remote {
            error: FetchError::Changed,
            ..
        }) => {}
        other => panic!("expected a change error, got {other:?}"),
    }
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = HttpSource::open(&format!("http://127.0.0.1:{port}/x.gguf"))
        .err()
        .expect("an error");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
}

/// Opens the folder at `url` over HTTP, the way the CLI does.
fn open_folder_over_http(url: &str) -> Result<Checkpoint, LoadError> {
    let open = |name: &str| -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> {
        Ok(HttpSource::open_in_folder(url, name)?
            .map(|s| Box::new(s) as Box<dyn ByteSource + Sync>))
    };
    Checkpoint::open(url, &open, None)
}

/// Reads the whole virtual data section of the sharded Llama 4 folder over HTTP (in 4 KiB chunks,
/// 4 in flight) under `faults`, and checks it against the same folder read from memory.
fn load_folder(faults: Faults) -> Result<(), LoadError> {
    let files = fixture_folder("llama4");
    let local = {
        let files = files.clone();
        let open = move |name: &str| -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> {
            Ok(files
                .get(name)
                .map(|b| Box::new(MemorySource(b.clone())) as Box<dyn ByteSource + Sync>))
        };
        Checkpoint::open("local", &open, None).unwrap()
    };
    let s = serve_files(files, faults);
    let remote = open_folder_over_http(&s.url)?;
    let h = &remote.streamed_header;
    let all: Vec<usize> = (0..h.tensors.len()).collect();
    let mut sink = MemorySink::default();
    stream_tensors(&remote, h, &all, 4096, 4, &mut sink, &mut |_, _| {})?;
    for (i, t) in h.tensors.iter().enumerate() {
        let (a, e) = h.tensor_range(t);
        assert_eq!(
            sink.tensors[&i],
            local.read_at(a, e - a).unwrap(),
            "tensor {}",
            t.name
        );
    }
    Ok(())
}

#[test]
fn a_folder_over_http_survives_the_same_faults_as_a_file() {
    load_folder(Faults::default()).unwrap();
    load_folder(Faults {
        fail_first: 2,
        ..Default::default()
    })
    .unwrap();
    load_folder(Faults {
        drop_request: Some(6),
        ..Default::default()
    })
    .unwrap();
    load_folder(Faults {
        ignore_range: true,
        ..Default::default()
    })
    .unwrap();
}

#[test]
fn a_folder_with_a_missing_or_changing_shard_is_a_clear_error() {
    let e = load_folder(Faults {
        not_found: true,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("model-00001-of-00004.safetensors") && e.contains("not found"),
        "{e}"
    );
    match load_folder(Faults {
        change_at: Some(8),
        ..Default::default()
    }) {
        Err(LoadError::Remote {
            error: FetchError::Changed,
            ..
        }) => {}
        other => panic!("expected a change error, got {other:?}"),
    }
}
