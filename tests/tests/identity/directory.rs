//! Sign-in through a real OpenLDAP slapd: OpenLDAP and Active Directory attribute paths, group
//! mapping, disabled accounts, injection, group removal, and a directory that is down.

use crate::support::{audit_count, login, map_groups, sign_in};
use kiorex_api::identity::IdentitySettings;
use kiorex_api::identity::ldap::{DirectoryError, GroupSource, LdapSettings, authenticate};
use kiorex_testkit::ldap::{BASE, PASSWORD, Slapd};
use kiorex_testkit::{STAFF_PASSWORD, TestApp};
use reqwest::StatusCode;

fn openldap(slapd: &Slapd) -> LdapSettings {
    slapd.settings()
}

fn active_directory(slapd: &Slapd) -> LdapSettings {
    LdapSettings {
        user_filter: "(sAMAccountName={username})".into(),
        username_attribute: "sAMAccountName".into(),
        active_directory: true,
        groups: GroupSource::Search {
            base: format!("ou=Groups,{BASE}"),
            filter: "(member={dn})".into(),
        },
        ..openldap(slapd)
    }
}

async fn app_with(settings: LdapSettings) -> TestApp {
    let app = TestApp::spawn_with(IdentitySettings {
        ldap: Some(settings),
        ..IdentitySettings::default()
    })
    .await;
    map_groups(
        &app,
        &[
            ("Nurses", "nurse"),
            (&format!("cn=Physicians,ou=Groups,{BASE}"), "physician"),
        ],
    )
    .await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_users_sign_in_with_roles_from_their_groups() {
    let slapd = Slapd::start();
    let app = app_with(openldap(&slapd)).await;
    let nurse = sign_in(&app, "nurse.ward", PASSWORD).await;
    assert_eq!(nurse.roles(), ["nurse"]);
    assert_eq!(nurse.body["method"], "ldap");
    let wrong = login(&app, "nurse.ward", "not-her-password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let porter = login(&app, "porter", PASSWORD).await;
    assert_eq!(porter.status, StatusCode::FORBIDDEN, "{}", porter.body);
    assert_eq!(porter.body["code"], "KX-AUTH-005");
    // Filter metacharacters in the username are escaped: no match, no sign-in.
    for attack in ["*", "nurse.ward)(uid=*", "*)(|(uid=*", "nurse.ward\\2a"] {
        let reply = login(&app, attack, PASSWORD).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{attack}: {}",
            reply.body
        );
    }
    // Local break-glass administrators are untouched by the directory.
    assert_eq!(
        login(&app, "admin.a", STAFF_PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_attributes_and_disabled_accounts() {
    let slapd = Slapd::start();
    let app = app_with(active_directory(&slapd)).await;
    let doctor = sign_in(&app, "dadler", PASSWORD).await;
    assert_eq!(doctor.roles(), ["physician"]);
    assert_eq!(doctor.body["username"], "dadler");
    let disabled = login(&app, "dgone", PASSWORD).await;
    assert_eq!(
        disabled.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        disabled.body
    );
    // userPrincipalName works as the lookup attribute as well.
    let upn = LdapSettings {
        user_filter: "(userPrincipalName={username})".into(),
        ..active_directory(&slapd)
    };
    let person = authenticate(&upn, "dadler@hospital.test", PASSWORD)
        .await
        .expect("upn sign-in");
    assert_eq!(person.username, "dadler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_from_a_group_takes_effect_at_the_next_sign_in() {
    let slapd = Slapd::start();
    let app = app_with(openldap(&slapd)).await;
    sign_in(&app, "nurse.ward", PASSWORD).await;
    slapd.ldapmodify(&format!(
        "dn: cn=Nurses,ou=Groups,{BASE}\nchangetype: modify\ndelete: member\nmember: uid=nurse.ward,ou=Staff,{BASE}\n"
    ));
    let after = login(&app, "nurse.ward", PASSWORD).await;
    assert_eq!(after.status, StatusCode::FORBIDDEN, "{}", after.body);
    assert_eq!(audit_count(&app, "role-change", "nurse.ward"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_required_and_a_directory_that_is_down_gives_a_clear_error() {
    let slapd = Slapd::start();
    let plain = LdapSettings {
        url: slapd.ldap_url.clone(),
        ..openldap(&slapd)
    };
    assert!(matches!(
        authenticate(&plain, "nurse.ward", PASSWORD).await,
        Err(DirectoryError::Unavailable(why)) if why.contains("refused")
    ));
    let start_tls = LdapSettings {
        start_tls: true,
        ..plain.clone()
    };
    authenticate(&start_tls, "nurse.ward", PASSWORD)
        .await
        .expect("StartTLS sign-in");
    // A server certificate from another CA is not trusted.
    let other_ca = Slapd::start().ca_pem.clone();
    let untrusted = LdapSettings {
        ca_pem: Some(other_ca),
        ..openldap(&slapd)
    };
    assert!(matches!(
        authenticate(&untrusted, "nurse.ward", PASSWORD).await,
        Err(DirectoryError::Unavailable(_))
    ));
    let down = LdapSettings {
        url: format!("ldaps://127.0.0.1:{}", kiorex_testkit::free_port()),
        ..openldap(&slapd)
    };
    let app = app_with(down).await;
    let reply = login(&app, "nurse.ward", PASSWORD).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["code"], "KX-AUTH-006");
    assert_eq!(
        login(&app, "admin.a", STAFF_PASSWORD).await.status,
        StatusCode::OK
    );
}
