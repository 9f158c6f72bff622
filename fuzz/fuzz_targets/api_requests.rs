//! Request bodies and port specifications as the daemon parses them: every
//! API body type, strictly (unknown fields refused), and `-p` specs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren::api::types::{ConnectRequest, DisconnectRequest, NetworkCreate, SandboxCreate};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<NetworkCreate>(data);
    let _ = serde_json::from_slice::<SandboxCreate>(data);
    let _ = serde_json::from_slice::<ConnectRequest>(data);
    let _ = serde_json::from_slice::<DisconnectRequest>(data);
    if let Ok(spec) = std::str::from_utf8(data) {
        let _ = warren::api::ports::parse(spec);
    }
});
