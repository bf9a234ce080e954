//! The emulator counts the client connections open now and the most open
//! at once, over real TCP connections.

mod common;

use common::*;
use kube_emulator::{Connections, Emulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A kept-alive connection that has had one request answered (so the
/// server has surely accepted it).
async fn open_connection(emu: &Emulator) -> TcpStream {
    let mut s = TcpStream::connect(emu.addr()).await.expect("connect");
    s.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request sent");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("response read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "version answered");
    s
}

async fn wait_for(emu: &Emulator, want: Connections) {
    eventually(secs(30), &format!("connections {want:?}"), || async {
        (emu.connections() == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn open_and_peak_connections_are_counted() {
    let emu = Emulator::start().await.expect("emulator starts");
    assert_eq!(emu.connections(), Connections { open: 0, peak: 0 });
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open_connection(&emu).await);
    }
    wait_for(&emu, Connections { open: 3, peak: 3 }).await;

    held.truncate(1);
    wait_for(&emu, Connections { open: 1, peak: 3 }).await;

    emu.reset_connection_peak();
    assert_eq!(emu.connections(), Connections { open: 1, peak: 1 });
    held.push(open_connection(&emu).await);
    wait_for(&emu, Connections { open: 2, peak: 2 }).await;

    drop(held);
    wait_for(&emu, Connections { open: 0, peak: 2 }).await;
}
