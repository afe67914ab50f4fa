//! Identity federation and access control against real peers: OpenLDAP slapd, the npm
//! oidc-provider, and the core API with its PostgreSQL.

mod care;
mod directory;
mod local;
mod openid;
mod support;
