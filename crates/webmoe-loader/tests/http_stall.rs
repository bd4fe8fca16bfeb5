//! A stalled HTTP server (its own test binary: the stall timeout is process-wide).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use webmoe_loader::{ByteSource, HttpSource};

/// A server that sends its headers and then nothing: the read fails after the (configurable) stall
/// timeout, retried once, with a message that says the server stalled; never a hang.
#[test]
fn a_stalled_server_fails_within_the_stall_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/model.gguf", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/1000000\r\nContent-Length: 1\r\n\r\n",
                );
                std::thread::sleep(std::time::Duration::from_secs(3600));
            });
        }
    });
    webmoe_loader::set_stall_timeout(1);
    // The probe reads only headers; the first data read waits for a body that never comes.
    let src = HttpSource::open(&url).unwrap();
    let e = src
        .read_at(0, 4096)
        .expect_err("a stalled server is an error");
    assert!(e.to_string().contains("stalled"), "{e}");
    // A stalled server is tried twice, not five times.
    assert!(
        matches!(
            e,
            webmoe_loader::LoadError::Remote {
                error: webmoe_loader::remote::FetchError::Stalled { .. },
                attempts: 2,
                ..
            }
        ),
        "{e:?}"
    );
    webmoe_loader::set_stall_timeout(30);
}
