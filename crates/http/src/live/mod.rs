//! The live feed over WebSocket (`ws.rs`) and Server-Sent Events (`sse.rs`).
//! Both transports drive the same [`Session`]: subscriptions by device, list,
//! group, label selector or whole tenant; a snapshot or a resume from a
//! sequence number; then updates, attribute changes and lag notices.

mod session;
pub mod sse;
pub mod ws;
