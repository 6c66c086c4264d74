//! Compile-time behaviour of `#[derive(DomainEvent)]`: what compiles, and
//! the error (with its span) for each misuse.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass_*.rs");
    cases.compile_fail("tests/ui/fail_*.rs");
}
