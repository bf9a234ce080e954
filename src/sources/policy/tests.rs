//! The policy is evaluated on addresses and names only: these tests never
//! send traffic anywhere.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn refused(r: Result<(), SourceError>) -> bool {
    matches!(r, Err(SourceError::NotAllowed(_)))
}

#[test]
fn builtin_list_refuses_link_local_and_metadata_names() {
    let p = EndpointPolicy::open();
    for host in [
        "169.254.169.254",
        "[fe80::1]",
        "metadata.google.internal",
        "Metadata.Google.Internal.",
        "metadata.azure.com",
        "fd00:ec2::254",
    ] {
        assert!(
            refused(p.check_written("shop", "redis.url", host)),
            "{host}"
        );
    }
    assert!(refused(p.check_address(
        "x",
        "169.254.169.254",
        ip("169.254.169.254")
    )));
    // IPv4-mapped IPv6 is the same address.
    assert!(refused(p.check_address(
        "x",
        "h",
        ip("::ffff:169.254.169.254")
    )));
    assert!(p
        .check_written("shop", "redis.url", "redis.shop.svc")
        .is_ok());
    assert!(p.check_address("x", "redis", ip("10.0.0.7")).is_ok());
}

#[test]
fn a_name_that_resolves_into_a_denied_range_is_refused() {
    let p = EndpointPolicy::open();
    assert!(p
        .check_written("shop", "prometheus.url", "innocent.example")
        .is_ok());
    assert!(refused(p.check_address(
        "prometheus.url",
        "innocent.example",
        ip("169.254.10.1")
    )));
}

#[test]
fn allow_names_a_builtin_address_explicitly_but_deny_always_wins() {
    let p = EndpointPolicy::new(EndpointRule::Any, "169.254.10.0/24", "").unwrap();
    assert!(p.check_address("x", "h", ip("169.254.10.9")).is_ok());
    assert!(refused(p.check_address("x", "h", ip("169.254.169.254"))));
    let p =
        EndpointPolicy::new(EndpointRule::Any, "10.0.0.0/8", "10.1.0.0/16,*.admin.svc").unwrap();
    assert!(refused(p.check_address("x", "h", ip("10.1.2.3"))));
    assert!(p.check_address("x", "h", ip("10.2.2.3")).is_ok());
    assert!(refused(p.check_written(
        "shop",
        "redis.url",
        "db.admin.svc"
    )));
}

#[test]
fn same_namespace_takes_only_services_of_the_pools_namespace() {
    let p = EndpointPolicy::new(
        EndpointRule::SameNamespace,
        "redis.shared.svc.cluster.local",
        "",
    )
    .unwrap();
    for host in [
        "redis",
        "redis.shop",
        "redis.shop.svc",
        "redis.shop.svc.cluster.local",
    ] {
        assert!(p.check_written("shop", "redis.url", host).is_ok(), "{host}");
    }
    for host in [
        "redis.other",
        "redis.other.svc.cluster.local",
        "10.0.0.1",
        "example.com",
        "redis.shop.svc.evil.com",
    ] {
        assert!(
            refused(p.check_written("shop", "redis.url", host)),
            "{host}"
        );
    }
    assert!(p
        .check_written("shop", "redis.url", "redis.shared.svc.cluster.local")
        .is_ok());
}

#[test]
fn patterns_parse_or_say_which_flag_is_wrong() {
    assert!(EndpointPolicy::new(EndpointRule::Any, "10.0.0.0/33", "")
        .unwrap_err()
        .contains("--allow-endpoints"));
    assert!(EndpointPolicy::new(EndpointRule::Any, "", "nonsense/8")
        .unwrap_err()
        .contains("--deny-endpoints"));
    assert!(glob_match("*.prod.svc", "a.b.prod.svc"));
    assert!(!glob_match("*.prod.svc", "prod.svc"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(in_cidr(ip("10.1.2.3"), ip("10.0.0.0"), 8));
    assert!(!in_cidr(ip("11.1.2.3"), ip("10.0.0.0"), 8));
    assert!(in_cidr(ip("fe80::abcd"), ip("fe80::"), 10));
    assert!(in_cidr(ip("1.2.3.4"), ip("0.0.0.0"), 0));
}
