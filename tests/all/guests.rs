//! The build harness: every test guest was built and is a component, and the input producers
//! give what their names say. Fails when `build.rs` or a guest crate is broken.

use colony_tests::{
    COMPONENT_HEADER, CORE_MODULE_HEADER, core_module_bytes, guests, random_bytes, truncated_bytes,
};

#[test]
fn every_guest_is_a_component() {
    for (name, path) in guests::ALL {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("guest {name} at {path}: {e}"));
        assert!(
            bytes.starts_with(&COMPONENT_HEADER),
            "guest {name} at {path} does not start with the component header: {:02x?}",
            &bytes[..bytes.len().min(8)]
        );
    }
}

#[test]
fn good_agent_embeds_its_manifest() {
    let bytes =
        std::fs::read(guests::GOOD_AGENT).unwrap_or_else(|e| panic!("{}: {e}", guests::GOOD_AGENT));
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(b"colony-manifest"),
        "no colony-manifest section name"
    );
    assert!(contains(br#""name":"good-agent""#), "no manifest JSON");
}

#[test]
fn malformed_inputs_are_what_they_claim() {
    let core = core_module_bytes();
    assert!(core.starts_with(&CORE_MODULE_HEADER));
    assert!(
        core.len() > 8,
        "a module with a function, not just a header"
    );

    let truncated = truncated_bytes();
    let full =
        std::fs::read(guests::GOOD_AGENT).unwrap_or_else(|e| panic!("{}: {e}", guests::GOOD_AGENT));
    assert!(truncated.starts_with(&COMPONENT_HEADER));
    assert_eq!(truncated.len(), full.len() / 2);

    assert_eq!(random_bytes(1).len(), 4096);
    assert_eq!(random_bytes(1), random_bytes(1), "deterministic");
    assert_ne!(random_bytes(1), random_bytes(2), "seeded");
    assert!(!random_bytes(0).starts_with(b"\0asm"));
}
