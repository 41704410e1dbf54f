//! Discovery documents: `/version`, legacy discovery (`/api`, `/apis`, `/api/v1`,
//! `/apis/{g}`, `/apis/{g}/{v}`), aggregated discovery (`apidiscovery.k8s.io/v2` and
//! `v2beta1`, chosen by the `Accept` header), and OpenAPI v3 stubs that carry just what
//! `kubectl apply` needs to use server-side field validation (a PATCH operation per kind with
//! `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter; no schemas).

use serde_json::{Map, Value, json};

use crate::registry::{KindInfo, Registry, VERBS};

/// The version the server claims.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-plinth-testserver",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// Which discovery format an `Accept` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Legacy,
    /// `apidiscovery.k8s.io/v2`
    V2,
    /// `apidiscovery.k8s.io/v2beta1`
    V2Beta1,
}

impl Format {
    /// The first aggregated format the header lists, if any (kubectl lists v2, then
    /// v2beta1, then plain JSON).
    pub fn from_accept(accept: &str) -> Format {
        for part in accept.split(',') {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            if !params.contains(&"as=APIGroupDiscoveryList")
                || !params.contains(&"g=apidiscovery.k8s.io")
            {
                continue;
            }
            if params.contains(&"v=v2") {
                return Format::V2;
            }
            if params.contains(&"v=v2beta1") {
                return Format::V2Beta1;
            }
        }
        Format::Legacy
    }

    /// The exact `Content-Type` of the answer.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Legacy => "application/json",
            Format::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Format::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// Subresources of a kind with the kind they answer (`group`, `version`, `kind`).
fn subresources(k: &KindInfo) -> Vec<(&'static str, Value)> {
    let own = json!({"group": k.group, "version": k.version, "kind": k.kind});
    let mut subs = Vec::new();
    if k.status_subresource {
        subs.push(("status", own));
    }
    if k.scale_subresource {
        subs.push((
            "scale",
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
        ));
    }
    subs
}

/// `APIVersions` for `/api`.
pub fn api_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]
    })
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `APIGroupList` for `/apis`.
pub fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(&g, &v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIGroup` for `/apis/{group}`.
pub fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    let (_, versions) = registry
        .groups()
        .into_iter()
        .find(|(g, _)| g == group && !g.is_empty())?;
    let mut v = group_entry(group, &versions);
    if let Some(m) = v.as_object_mut() {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    Some(v)
}

/// `APIResourceList` for `/api/v1` or `/apis/{group}/{version}`.
pub fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let kinds = registry.resources(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for i in kinds {
        let k = registry.get(i);
        let mut r = Map::new();
        r.insert("name".into(), json!(k.plural));
        r.insert("singularName".into(), json!(k.singular));
        r.insert("namespaced".into(), json!(k.namespaced));
        r.insert("kind".into(), json!(k.kind));
        r.insert("verbs".into(), json!(VERBS));
        if !k.short_names.is_empty() {
            r.insert("shortNames".into(), json!(k.short_names));
        }
        resources.push(Value::Object(r));
        for (sub, kind) in subresources(k) {
            let mut r = json!({
                "name": format!("{}/{sub}", k.plural),
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": kind["kind"],
                "verbs": ["get", "patch", "update"],
            });
            if sub == "scale" {
                r["group"] = kind["group"].clone();
                r["version"] = kind["version"].clone();
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// `APIGroupDiscoveryList` for `/api` (`core: true`) or `/apis`.
pub fn aggregated(registry: &Registry, core: bool, format: Format) -> Value {
    let api_version = match format {
        Format::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        _ => "apidiscovery.k8s.io/v2",
    };
    let items: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = registry
                        .resources(&group, version)
                        .into_iter()
                        .map(|i| {
                            let k = registry.get(i);
                            let kind = json!({"group": k.group, "version": k.version, "kind": k.kind});
                            let mut r = Map::new();
                            r.insert("resource".into(), json!(k.plural));
                            r.insert("responseKind".into(), kind.clone());
                            r.insert(
                                "scope".into(),
                                json!(if k.namespaced { "Namespaced" } else { "Cluster" }),
                            );
                            r.insert("singularResource".into(), json!(k.singular));
                            r.insert("verbs".into(), json!(VERBS));
                            if !k.short_names.is_empty() {
                                r.insert("shortNames".into(), json!(k.short_names));
                            }
                            let subs: Vec<Value> = subresources(k)
                                .into_iter()
                                .map(|(s, kind)| {
                                    json!({"subresource": s, "responseKind": kind, "verbs": ["get", "patch", "update"]})
                                })
                                .collect();
                            if !subs.is_empty() {
                                r.insert("subresources".into(), Value::Array(subs));
                            }
                            Value::Object(r)
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}

/// `api/v1` or `apis/{group}/{version}`: the OpenAPI v3 path of a group version.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A content hash, so clients caching by `?hash=` see changes.
fn hash(v: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// The OpenAPI v3 root: one entry per group version.
pub fn openapi_root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let doc = openapi_gv(registry, &group, &version).unwrap_or(Value::Null);
            let p = gv_path(&group, &version);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of a group version: item paths with a PATCH operation per kind.
pub fn openapi_gv(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let kinds = registry.resources(group, version);
    if kinds.is_empty() {
        return None;
    }
    let query = |name: &str, ty: &str| json!({"name": name, "in": "query", "description": name, "schema": {"type": ty, "uniqueItems": true}});
    let mut paths = Map::new();
    for i in kinds {
        let k = registry.get(i);
        let prefix = format!("/{}", gv_path(group, version));
        let item = if k.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
        } else {
            format!("{prefix}/{}/{{name}}", k.plural)
        };
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let mut params = vec![
            json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}),
        ];
        if k.namespaced {
            params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
        }
        let patch = json!({
            "description": format!("partially update the specified {}", k.kind),
            "operationId": format!("patch{}", k.kind),
            "parameters": [
                query("dryRun", "string"),
                query("fieldManager", "string"),
                query("fieldValidation", "string"),
                query("force", "boolean"),
            ],
            "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
        });
        let read = json!({
            "description": format!("read the specified {}", k.kind),
            "operationId": format!("read{}", k.kind),
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": gvk,
        });
        paths.insert(
            item,
            json!({"get": read, "patch": patch, "parameters": params}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Format::from_accept(kubectl), Format::V2);
        assert_eq!(
            Format::from_accept(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Format::V2Beta1
        );
        assert_eq!(Format::from_accept("application/json"), Format::Legacy);
        assert_eq!(Format::from_accept(""), Format::Legacy);
    }

    #[test]
    fn every_group_has_versions() {
        let r = Registry::plinth();
        let list = aggregated(&r, false, Format::V2);
        let items = list["items"].as_array().expect("items");
        assert!(!items.is_empty());
        for g in items {
            assert!(!g["versions"].as_array().expect("versions").is_empty());
        }
        let core = aggregated(&r, true, Format::V2);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
    }
}
