//! A service catalogue, through `Catalogue::parse` (what `Catalogue::load`
//! runs on the file's text). A refused one has errors that point into it;
//! an accepted one has no dependency cycle, so recovery order puts every
//! service after what it depends on and leaves none out.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use dr_reactor::catalogue::Catalogue;
use dr_reactor_fuzz::check_errors;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "services.yaml";

fuzz_target!(|data: &[u8]| {
    // Catalogue::load reads the file as UTF-8 text and refuses anything else.
    let cat = match std::str::from_utf8(data).map(|text| Catalogue::parse(text, Path::new(FILE))) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return check_errors(&e, Path::new(FILE), data),
        Err(_) => return,
    };
    let all: BTreeSet<String> = cat.services.keys().cloned().collect();
    let order = cat.recovery_order(&all);
    assert_eq!(
        order.len(),
        all.len(),
        "recovery order lost or repeated a service: {order:?}"
    );
    assert_eq!(order.iter().cloned().collect::<BTreeSet<_>>(), all);
    let position = |s: &str| order.iter().position(|o| o == s);
    for (name, svc) in &cat.services {
        for dep in &svc.depends_on {
            assert!(
                position(dep).is_some(),
                "{name} depends on {dep}, not in the catalogue"
            );
            assert!(
                position(dep) < position(name),
                "{name} is recovered before its dependency {dep}: {order:?}"
            );
        }
    }
    let smallest = cat
        .services
        .values()
        .map(|s| s.rto)
        .filter(|d| !d.is_zero())
        .min();
    assert_eq!(cat.rto_budget(&order), smallest);
    for name in all.iter().take(8) {
        let one = BTreeSet::from([name.clone(), "(unknown)".to_owned()]);
        assert_eq!(
            cat.recovery_order(&one),
            [name.clone(), "(unknown)".to_owned()]
        );
    }
});
