//! A tiny blocking HTTP/1.1 client for the tests (the server runs on its own thread, so
//! tests can block), with a chunked-stream reader for watches.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

const TIMEOUT: Duration = Duration::from_secs(20);

fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// Read one chunk of a chunked body; `None` at the end.
fn read_chunk(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut size = String::new();
    if r.read_line(&mut size)? == 0 {
        return Ok(None);
    }
    let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
    if n == 0 {
        let mut crlf = String::new();
        r.read_line(&mut crlf)?;
        return Ok(None);
    }
    let mut buf = vec![0; n + 2];
    r.read_exact(&mut buf)?;
    buf.truncate(n);
    Ok(Some(buf))
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client { addr }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<BufReader<TcpStream>> {
        let mut s = TcpStream::connect_timeout(&self.addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: testclient/1.0\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        Ok(BufReader::new(s))
    }

    /// Send a request and read the whole answer; `Err` if the connection closes first.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let mut r = self.send(method, path, headers, body)?;
        let (status, headers) = read_head(&mut r)?;
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let mut body = Vec::new();
        if chunked {
            while let Some(c) = read_chunk(&mut r)? {
                body.extend(c);
            }
        } else {
            let len = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok());
            match len {
                Some(n) => {
                    body.resize(n, 0);
                    r.read_exact(&mut body)?;
                }
                None => {
                    r.read_to_end(&mut body)?;
                }
            }
        }
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn get_accept(&self, path: &str, accept: &str) -> Resp {
        self.request("GET", path, &[("Accept", accept)], b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "PUT",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn patch(&self, path: &str, content_type: &str, body: &[u8]) -> Resp {
        self.request("PATCH", path, &[("Content-Type", content_type)], body)
    }

    /// Server-side apply of a JSON body.
    pub fn apply(&self, path: &str, body: &Value) -> Resp {
        self.patch(
            path,
            "application/apply-patch+yaml",
            body.to_string().as_bytes(),
        )
    }

    pub fn merge_patch(&self, path: &str, body: &Value) -> Resp {
        self.patch(
            path,
            "application/merge-patch+json",
            body.to_string().as_bytes(),
        )
    }

    pub fn delete(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "DELETE",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Open a watch; events are read with [`Watch::next`].
    pub fn watch(&self, path: &str) -> Watch {
        let mut r = self.send("GET", path, &[], b"").expect("watch request");
        let (status, _) = read_head(&mut r).expect("watch answer");
        Watch {
            status,
            reader: r,
            pending: Vec::new(),
        }
    }
}

/// A watch stream.
pub struct Watch {
    pub status: u16,
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl Watch {
    /// The next event, or `None` if none arrives within `within` (or the stream ended).
    pub fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("event JSON"));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match read_chunk(&mut self.reader) {
                Ok(Some(c)) => self.pending.extend(c),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// `(type, name)` of the next event.
    pub fn next_brief(&mut self, within: Duration) -> Option<(String, String)> {
        let e = self.next(within)?;
        Some((
            e["type"].as_str().unwrap_or("").to_string(),
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        ))
    }
}
