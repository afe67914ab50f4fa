//! A throwaway OpenLDAP `slapd` for tests: its own config in a temp dir, mdb backend, the
//! `memberof` overlay, LDAPS with a test CA whose server certificate names 127.0.0.1, a small
//! schema with Active Directory's attribute OIDs (sAMAccountName, userPrincipalName,
//! userAccountControl), and people seeded with `ldapadd` (memberof does not run under slapadd).

use crate::free_port;
use crate::pki::{CertFiles, Pki};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=hospital,dc=test";
pub const SERVICE_DN: &str = "cn=kiorex-svc,ou=Service,dc=hospital,dc=test";
pub const SERVICE_PASSWORD: &str = "service-secret-42";
/// Every seeded person's password.
pub const PASSWORD: &str = "Ward-4B-night-shift";

const ROOT_DN: &str = "cn=admin,dc=hospital,dc=test";
const ROOT_PASSWORD: &str = "root-secret-42";

const AD_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.1.1 NAME 'kiorexAdUser' AUXILIARY MAY ( sAMAccountName $ userPrincipalName $ userAccountControl ) )
";

/// A running slapd; stopped and removed on drop.
pub struct Slapd {
    pub ldaps_url: String,
    /// Plain LDAP on another port, for the StartTLS and "insecure refused" tests.
    pub ldap_url: String,
    pub ca_pem: Vec<u8>,
    /// The test CA's certificate, as a file (for `ldap.ca_file`).
    pub ca_file: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
    _pki: Pki,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, ca_file: &Path, server: &CertFiles) -> String {
    let d = dir.display();
    let (ca, cert, key) = (
        ca_file.display(),
        server.cert.display(),
        server.key.display(),
    );
    format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         include {d}/ad.schema\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         moduleload memberof\n\
         pidfile {d}/slapd.pid\n\
         TLSCACertificateFile {ca}\n\
         TLSCertificateFile {cert}\n\
         TLSCertificateKeyFile {key}\n\
         database mdb\n\
         maxsize 10485760\n\
         suffix \"{BASE}\"\n\
         rootdn \"{ROOT_DN}\"\n\
         rootpw {ROOT_PASSWORD}\n\
         directory {d}/data\n\
         overlay memberof\n"
    )
}

/// The people every test directory has. `nurse.ward` is a nurse; `doctor.ad` is an AD-style
/// physician (sAMAccountName, userPrincipalName); `disabled.ad` has ACCOUNTDISABLE set;
/// `porter` is in no mapped group.
fn seed() -> String {
    let person = |uid: &str, cn: &str, extra: &str| {
        format!(
            "dn: uid={uid},ou=Staff,{BASE}\nobjectClass: inetOrgPerson\nobjectClass: kiorexAdUser\n\
             uid: {uid}\ncn: {cn}\nsn: {cn}\nmail: {uid}@hospital.test\nuserPassword: {PASSWORD}\n{extra}"
        )
        .trim_end()
        .to_owned()
            + "\n\n"
    };
    let group = |cn: &str, members: &[&str]| {
        let mut s = format!("dn: cn={cn},ou=Groups,{BASE}\nobjectClass: groupOfNames\ncn: {cn}\n");
        for m in members {
            s.push_str(&format!("member: uid={m},ou=Staff,{BASE}\n"));
        }
        s + "\n"
    };
    [
        format!("dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: hospital\no: Test Hospital\n\n"),
        format!("dn: ou=Staff,{BASE}\nobjectClass: organizationalUnit\nou: Staff\n\n"),
        format!("dn: ou=Groups,{BASE}\nobjectClass: organizationalUnit\nou: Groups\n\n"),
        format!("dn: ou=Service,{BASE}\nobjectClass: organizationalUnit\nou: Service\n\n"),
        format!(
            "dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: kiorex-svc\nuserPassword: {SERVICE_PASSWORD}\n\n"
        ),
        person("nurse.ward", "Nora Ward", "userAccountControl: 512"),
        person(
            "doctor.ad",
            "Dana Adler",
            "sAMAccountName: dadler\nuserPrincipalName: dadler@hospital.test\nuserAccountControl: 512",
        ),
        person(
            "disabled.ad",
            "Dirk Gone",
            "sAMAccountName: dgone\nuserPrincipalName: dgone@hospital.test\nuserAccountControl: 514",
        ),
        person("nurse.night", "Nick Night", ""),
        person("porter", "Pat Porter", ""),
        group("Nurses", &["nurse.ward", "nurse.night"]),
        group("Physicians", &["doctor.ad", "disabled.ad"]),
        group("Porters", &["porter"]),
    ]
    .concat()
}

impl Slapd {
    /// Starts slapd with the seeded directory; panics with slapd's output if it cannot.
    pub fn start() -> Slapd {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("data")).expect("data dir");
        std::fs::write(dir.path().join("ad.schema"), AD_SCHEMA).expect("schema");
        let pki = Pki::new("Kiorex test directory CA");
        let server = pki.server("slapd", &["127.0.0.1", "localhost"]);
        let conf = config(dir.path(), &pki.ca_file, &server);
        std::fs::write(dir.path().join("slapd.conf"), conf).expect("config");
        let (tls_port, plain_port) = (free_port(), free_port());
        let ldaps_url = format!("ldaps://127.0.0.1:{tls_port}");
        let ldap_url = format!("ldap://127.0.0.1:{plain_port}");
        let child = Command::new(slapd_binary())
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("{ldaps_url}/ {ldap_url}/"))
            // -d keeps slapd in the foreground, so the test owns the process.
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("slapd (install the slapd package)");
        let slapd = Slapd {
            ldaps_url,
            ldap_url,
            ca_pem: pki.ca_pem.clone().into_bytes(),
            ca_file: pki.ca_file.clone(),
            child,
            _dir: dir,
            _pki: pki,
        };
        slapd.wait_until_listening(plain_port);
        slapd.ldapadd(&seed());
        slapd
    }

    fn wait_until_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies LDIF with `ldapadd` as the directory's root.
    pub fn ldapadd(&self, ldif: &str) {
        self.ldap_tool("ldapadd", ldif);
    }

    /// Applies a change LDIF with `ldapmodify` (e.g. removing someone from a group).
    pub fn ldapmodify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.ldap_url,
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldap-utils");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write ldif");
        let out = child.wait_with_output().expect("ldap tool");
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn slapd_binary() -> &'static str {
    if Path::new("/usr/sbin/slapd").exists() {
        "/usr/sbin/slapd"
    } else {
        "slapd"
    }
}

impl Slapd {
    /// Kiorex's directory settings for this slapd, OpenLDAP style (uid, memberOf, LDAPS).
    pub fn settings(&self) -> kiorex_api::identity::ldap::LdapSettings {
        kiorex_api::identity::ldap::LdapSettings {
            url: self.ldaps_url.clone(),
            start_tls: false,
            allow_insecure: false,
            ca_pem: Some(self.ca_pem.clone()),
            bind_dn: SERVICE_DN.into(),
            bind_password: SERVICE_PASSWORD.into(),
            user_base: format!("ou=Staff,{BASE}"),
            user_filter: "(uid={username})".into(),
            username_attribute: "uid".into(),
            display_name_attribute: "cn".into(),
            email_attribute: "mail".into(),
            groups: kiorex_api::identity::ldap::GroupSource::MemberOf,
            active_directory: false,
            disabled_attribute: None,
            timeout: Duration::from_secs(5),
        }
    }
}
