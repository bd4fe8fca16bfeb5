//! `webmoe serve` against hostile requests: dotfiles, links leading outside the folder, path
//! traversal, foreign `Host` headers (DNS rebinding), and clients that connect and send nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_webmoe"))
}

struct Server(Child, u16, PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

/// A folder with a page, dotfiles, a link to a file outside it and one inside, served with a
/// one-second header timeout.
fn serve(extra: &[&str]) -> Server {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let root = std::env::temp_dir().join(format!("webmoe-serve-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let site = root.join("site");
    std::fs::create_dir_all(site.join(".git")).unwrap();
    std::fs::create_dir_all(site.join("sub")).unwrap();
    std::fs::write(site.join("index.html"), "hello").unwrap();
    std::fs::write(site.join("sub/ok.txt"), "ok").unwrap();
    std::fs::write(site.join(".env"), "SECRET=1").unwrap();
    std::fs::write(site.join(".git/config"), "[core]").unwrap();
    std::fs::write(root.join("outside.txt"), "private").unwrap();
    std::os::unix::fs::symlink(root.join("outside.txt"), site.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(site.join("sub/ok.txt"), site.join("inner.txt")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args(["serve", "--dir"])
        .arg(&site)
        .args(["--port", &port.to_string(), "--timeout", "1"])
        .args(extra)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "webmoe serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child, port, root)
}

/// Status line and body of `GET path` with `host`.
fn get(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Read to the end; a reset after the answer (the server closing first) ends it as well.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !bytes.is_empty() => break,
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
    let out = String::from_utf8_lossy(&bytes).to_string();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn only_files_inside_the_folder_are_served() {
    let s = serve(&[]);
    let local = format!("127.0.0.1:{}", s.1);
    assert_eq!(get(s.1, "/index.html", &local), (200, "hello".into()));
    assert_eq!(
        get(s.1, "/inner.txt", &local).0,
        200,
        "a link inside the folder"
    );
    for path in [
        "/.env",
        "/.git/config",
        "/%2eenv",
        "/sub/../.env",
        "/leak.txt",
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/sub/%2e%2e/%2e%2e/outside.txt",
    ] {
        let (status, body) = get(s.1, path, &local);
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(
            !body.contains("private") && !body.contains("SECRET"),
            "{path}: {body}"
        );
    }
}

#[test]
fn foreign_host_headers_are_refused_unless_allowed() {
    let s = serve(&[]);
    assert_eq!(get(s.1, "/index.html", "evil.example").0, 403);
    assert_eq!(
        get(s.1, "/index.html", &format!("evil.example:{}", s.1)).0,
        403
    );
    assert_eq!(
        get(s.1, "/index.html", &format!("localhost:{}", s.1)).0,
        200
    );
    let s2 = serve(&["--allow-host", "demo.test"]);
    assert_eq!(get(s2.1, "/index.html", "demo.test").0, 200);
    assert_eq!(get(s2.1, "/index.html", "evil.example").0, 403);
}

#[test]
fn a_client_that_sends_nothing_is_disconnected() {
    let s = serve(&[]);
    let mut c = TcpStream::connect(("127.0.0.1", s.1)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap(); // never finished
    let mut buf = [0u8; 256];
    // The server closes the connection (read returns 0 or an error), it does not wait forever.
    match c.read(&mut buf) {
        Ok(n) => assert!(
            n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection stayed open: {e}"),
    }
}

#[test]
fn serve_needs_an_explicit_folder() {
    let out = bin().args(["serve", "--port", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dir"));
}
