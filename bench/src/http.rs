//! One keep-alive HTTP/1.1 connection (hyper's low-level client: no pool, no proxy, little
//! generator CPU per request), from its own loopback source address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

/// A request as the scenarios describe it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: &'static str,
    pub bearer: Option<String>,
    /// A JSON body.
    pub body: Option<Bytes>,
}

impl Req {
    /// `GET path` with a bearer token.
    pub fn get(path: &'static str, bearer: &str) -> Self {
        Self {
            method: Method::GET,
            path,
            bearer: Some(bearer.to_owned()),
            body: None,
        }
    }

    /// `POST path` with a JSON body.
    pub fn post(path: &'static str, body: &serde_json::Value) -> Self {
        Self {
            method: Method::POST,
            path,
            bearer: None,
            body: Some(Bytes::from(body.to_string())),
        }
    }
}

/// One connection to the service, reopened after an error.
pub struct Conn {
    server: SocketAddr,
    source: IpAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// The loopback source address of connection `index`: 127.0.0.2 up to 127.0.0.251, so the
/// service sees many clients and its per-IP limit windows hold as few hits as in production.
pub fn source_address(index: usize) -> IpAddr {
    let n = u8::try_from(index % 250).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n))
}

impl Conn {
    /// A connection (opened on first use) from `source` to `server`.
    pub fn new(server: SocketAddr, source: IpAddr) -> anyhow::Result<Self> {
        let host = HeaderValue::from_str(&server.to_string()).context("host header")?;
        Ok(Self {
            server,
            source,
            host,
            sender: None,
        })
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.source, 0))?;
        let stream = socket.connect(self.server).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors reach the sender.
            let _ = connection.await;
        });
        Ok(self.sender.insert(sender))
    }

    /// Sends `req` and reads the whole answer: its status and body.
    pub async fn send(&mut self, req: &Req) -> anyhow::Result<(u16, Bytes)> {
        let result = self.try_send(req).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_send(&mut self, req: &Req) -> anyhow::Result<(u16, Bytes)> {
        let host = self.host.clone();
        let sender = match self.sender.take() {
            Some(s) if !s.is_closed() => self.sender.insert(s),
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(req.path)
            .header(HOST, host);
        if let Some(token) = &req.bearer {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match &req.body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                b.clone()
            }
            None => Bytes::new(),
        };
        let response = sender.send_request(builder.body(Full::new(body))?).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
