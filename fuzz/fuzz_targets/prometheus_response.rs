//! The Prometheus instant-query answer parser (src/sources/prometheus.rs).
//! Its parsing functions are private, so this drives the public path: a
//! `prometheus` trigger built by `Sources::build` reads from a local HTTP
//! server that answers every request with the fuzz input as its body (and a
//! status picked by the input's first byte). A read may fail, never panic,
//! and a value it returns is a finite number.
#![no_main]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, Sources};

struct Harness {
    runtime: tokio::runtime::Runtime,
    answer: Arc<Mutex<(u16, Vec<u8>)>>,
    source: Arc<dyn MetricSource>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new((200u16, Vec::new())));
        let served = answer.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (code, body) = served.lock().unwrap().clone();
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            }
        });
        let trigger: Trigger = serde_json::from_value(serde_json::json!({
            "name": "fuzz",
            "prometheus": {"url": format!("http://{addr}"), "query": "sum(x)", "onEmpty": "Error"},
            "targetPerReplica": 1
        }))
        .expect("trigger");
        let sources = Sources::new();
        let source = sources
            .build(&trigger, &BTreeMap::new(), Duration::from_secs(5))
            .expect("source");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Harness {
            runtime,
            answer,
            source,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let (code, body) = match data.split_first() {
        Some((b, rest)) if *b < 8 => ([200, 400, 422, 500, 503, 401, 302, 204][*b as usize], rest),
        _ => (200, data),
    };
    *h.answer.lock().unwrap() = (code, body.to_vec());
    if let Ok(v) = h.runtime.block_on(h.source.read()) {
        assert!(v.is_finite(), "read returned {v}");
    }
});
