//! Property tests of the renderer over generated valid specs (`crate::arbitrary`): every
//! generated spec passes the CRD's CEL rules and validates, rendering never panics and is
//! deterministic (the same bytes twice, and from a copy of the spec).

use proptest::prelude::*;

use super::render;
use crate::arbitrary::{microservice, spec};
use crate::validate::validate;

fn bytes(children: &super::Children) -> Vec<u8> {
    let mut out = Vec::new();
    for object in [
        serde_json::to_vec(&children.config_map),
        serde_json::to_vec(&children.deployment),
        serde_json::to_vec(&children.service),
        serde_json::to_vec(&children.ingress),
        serde_json::to_vec(&children.hpa),
    ] {
        out.extend(object.expect("a rendered child serializes"));
        out.push(b'\n');
    }
    out.extend(children.template_hash.as_bytes());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_specs_validate_and_render_deterministically(spec in spec()) {
        let ms = microservice("shop", "prod", "u-1", spec.clone());
        // The CRD's CEL rules (as the apiserver runs them) take every generated spec too.
        let cel = kube::core::cel::validate_cel(&ms);
        prop_assert!(cel.is_ok(), "a generated spec fails the CRD's rules: {:?}\n{spec:#}", cel.err());
        let valid = validate(&ms);
        prop_assert!(valid.is_ok(), "a generated spec is refused: {:?}\n{spec:#}", valid.err());
        let valid = valid.expect("checked");
        let first = bytes(&render(&valid));
        prop_assert_eq!(&first, &bytes(&render(&valid)), "same spec, other bytes");
        let again = validate(&microservice("shop", "prod", "u-1", spec)).expect("valid again");
        prop_assert_eq!(first, bytes(&render(&again)), "a copy of the spec renders other bytes");
    }
}
