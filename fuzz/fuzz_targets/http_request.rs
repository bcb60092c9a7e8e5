//! Any bytes as a `POST /get-online-features` body: a request or a 400, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_feature_server::http::parse_request(data);
});
