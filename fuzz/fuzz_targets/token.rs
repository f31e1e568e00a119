//! Any text as a bearer token: verification never panics, and nothing but the one token this
//! service issued and registered is ever accepted.
#![no_main]

use std::sync::{Arc, OnceLock};

use backup_core::{MemoryCatalog, SystemClock};
use backup_policy::{StoredPassword, TokenKey, TokenRequest, TokenService, User};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    rt: tokio::runtime::Runtime,
    tokens: TokenService,
    valid: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let key = TokenKey::hs256(b"fuzzing secret, long enough", None).unwrap();
        let tokens = TokenService::new(key, Arc::new(MemoryCatalog::new()), Arc::new(SystemClock)).unwrap();
        let user = User {
            name: "u".into(),
            email: String::new(),
            roles: vec![],
            password: StoredPassword::Disabled,
            access_keys: vec![],
            restrict_by_ip: vec![],
            deactivated: false,
        };
        let valid = rt.block_on(tokens.issue(&user, None, TokenRequest::login())).unwrap().token;
        Fixture { rt, tokens, valid }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let verdict = f.rt.block_on(f.tokens.verify(text));
    assert_eq!(verdict.is_ok(), text == f.valid, "only the issued token verifies");
});
