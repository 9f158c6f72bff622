//! Overlay network definitions in etcd: one record per network, and the
//! claims that keep names, subnets and VNIs unique across the cluster.
//!
//! ```text
//! PREFIX/networks/ID        the definition (the daemon's NetworkDef, JSON)
//! PREFIX/overlay/names/NAME     → ID
//! PREFIX/overlay/subnets/CIDR   → ID
//! PREFIX/overlay/vnis/VNI       → ID
//! ```
//!
//! [`create`] writes all four in one transaction that succeeds only if
//! none of the three claims exists yet, so two members creating at the
//! same moment never end with the same name, subnet or VNI: the loser
//! learns which claim it lost ([`Conflict`]) and the daemon chooses again
//! or reports it. [`remove`] deletes the four in one transaction that
//! requires the definition to still be there. The records are not under
//! any lease: a network outlives the member that created it, as Docker's
//! overlay networks outlive their creator.
//!
//! Every member watches `PREFIX/networks/` (see the module above) and
//! turns the whole set into its local copies of the networks; records
//! that do not parse are the daemon's to skip.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};

/// Most overlay networks read from etcd.
pub const MAX_OVERLAYS: usize = 256;

/// What a definition must claim to exist.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub subnet: &'a str,
    pub vni: u32,
}

/// Which claim another network holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    Name,
    Subnet,
    Vni,
}

/// What [`create`] can run into.
#[derive(Debug)]
pub enum CreateError {
    /// Another network holds this claim (someone was first).
    Taken(Conflict),
    /// etcd did not answer.
    Store(String),
}

pub fn networks_prefix(prefix: &str) -> String {
    format!("{prefix}/networks/")
}

fn keys(prefix: &str, c: &Claims) -> [String; 4] {
    [
        format!("{prefix}/networks/{}", c.id),
        format!("{prefix}/overlay/names/{}", c.name),
        format!("{prefix}/overlay/subnets/{}", c.subnet.replace('/', "_")),
        format!("{prefix}/overlay/vnis/{}", c.vni),
    ]
}

/// Claims `c` and writes `record` as the definition, all or nothing.
pub async fn create(
    client: &mut Client,
    prefix: &str,
    c: &Claims<'_>,
    record: Vec<u8>,
) -> Result<(), CreateError> {
    let [def, name, subnet, vni] = keys(prefix, c);
    let free = |k: &String| Compare::version(k.as_str(), CompareOp::Equal, 0);
    let txn = Txn::new()
        .when([free(&def), free(&name), free(&subnet), free(&vni)])
        .and_then([
            TxnOp::put(def.as_str(), record, None),
            TxnOp::put(name.as_str(), c.id, None),
            TxnOp::put(subnet.as_str(), c.id, None),
            TxnOp::put(vni.as_str(), c.id, None),
        ]);
    let resp = client
        .txn(txn)
        .await
        .map_err(|e| CreateError::Store(e.to_string()))?;
    if resp.succeeded() {
        return Ok(());
    }
    // Which one was taken (read after the fact: good enough to choose again).
    for (key, which) in [
        (&name, Conflict::Name),
        (&subnet, Conflict::Subnet),
        (&vni, Conflict::Vni),
    ] {
        let got = client
            .get(key.as_str(), None)
            .await
            .map_err(|e| CreateError::Store(e.to_string()))?;
        if !got.kvs().is_empty() {
            return Err(CreateError::Taken(which));
        }
    }
    // The id itself collided (64 random hex digits: never), or the claim
    // was freed meanwhile: the caller tries again.
    Err(CreateError::Taken(Conflict::Name))
}

/// Deletes the definition and its claims; false when it was already gone.
pub async fn remove(client: &mut Client, prefix: &str, c: &Claims<'_>) -> Result<bool, String> {
    let [def, name, subnet, vni] = keys(prefix, c);
    let txn = Txn::new()
        .when([Compare::version(def.as_str(), CompareOp::Greater, 0)])
        .and_then([
            TxnOp::delete(def.as_str(), None),
            TxnOp::delete(name.as_str(), None),
            TxnOp::delete(subnet.as_str(), None),
            TxnOp::delete(vni.as_str(), None),
        ]);
    let resp = client.txn(txn).await.map_err(|e| e.to_string())?;
    Ok(resp.succeeded())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_keys_are_one_level_each() {
        let k = keys(
            "/warren",
            &Claims {
                id: "abc",
                name: "demo",
                subnet: "10.0.0.0/24",
                vni: 4097,
            },
        );
        assert_eq!(
            k,
            [
                "/warren/networks/abc",
                "/warren/overlay/names/demo",
                "/warren/overlay/subnets/10.0.0.0_24",
                "/warren/overlay/vnis/4097",
            ]
        );
    }
}
