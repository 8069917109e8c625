//! SCIM input (`edgeplane_core::scim`): a filter, a PATCH body and a User or Group body, from
//! any bytes. Besides not panicking: a filter either parses to a condition whose placeholders
//! match its bound values, or is refused as `invalidFilter`; every refusal is a 4xx.
#![no_main]

use edgeplane_core::scim::filter::{self, MAX_ARGS};
use edgeplane_core::scim::patch;
use edgeplane_core::scim::resource::{GroupAttr, GroupFields, UserAttr, UserFields};
use edgeplane_core::scim::ScimType;
use libfuzzer_sys::fuzz_target;

fn check_filter<A: filter::Attribute>(text: &str) {
    match filter::parse::<A>(text).and_then(|f| f.to_sql()) {
        Ok(c) => {
            assert_eq!(c.sql.matches('?').count(), c.args.len());
            assert!(c.args.len() <= MAX_ARGS);
        }
        Err(e) => assert_eq!(e.scim_type, Some(ScimType::InvalidFilter)),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_filter::<UserAttr>(text);
        check_filter::<GroupAttr>(text);
        let _ = patch::Path::parse(text);
    }
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        let base = UserFields::from_json(&serde_json::json!({"userName": "a@example.com"}));
        if let (Ok(ops), Ok(user)) = (patch::parse(&body), base) {
            if let Err(e) = patch::apply_to_user(&user, &ops) {
                assert!((400..500).contains(&e.status));
            }
            let _ = patch::group_edits(&ops);
        }
        for e in [UserFields::from_json(&body).err(), GroupFields::from_json(&body).err()]
            .into_iter()
            .flatten()
        {
            assert!((400..500).contains(&e.status));
        }
    }
});
