//! No App value can change the structure of what a template renders: plinth writes every
//! interpolated value as one YAML scalar (the engine's formatter), so the objects rendered —
//! their kinds, their number and the fields each has — never depend on what a string holds.
//! Checked on the exact attacks of the audit and, as a property, on every shipped template
//! with hostile strings in every string value its schema declares.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use plinth::load::MemSource;
use proptest::prelude::*;
use serde_json::{Value, json};

/// The files of a golden build repository (`tests/golden/build/<case>/repo`).
fn golden_repo(case: &str) -> BTreeMap<String, String> {
    common::files_under(&format!("tests/golden/build/{case}/repo"))
}

/// The App objects a build renders, or the error codes when it fails.
fn rendered(files: &BTreeMap<String, String>) -> Result<Vec<Value>, Vec<String>> {
    let mut src = MemSource::new();
    for (p, t) in files {
        src = src.with(p, t.as_str());
    }
    let built = plinth::build_source(&src, &plinth::Options::default()).unwrap();
    let errors: Vec<String> = built
        .checked
        .diagnostics
        .clone()
        .into_sorted()
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code.id(), d.message))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let lowered = built.lowered.expect("lowered");
    Ok(lowered
        .clusters
        .values()
        .flat_map(|c| &c.manifests)
        .filter(|m| m.object["metadata"]["annotations"]["plinth.dev/template"].is_string())
        .map(|m| serde_json::Value::clone(&m.object))
        .collect())
}

/// What a value must not change: each object's apiVersion, kind and namespace and the set of
/// its field paths (map keys and list positions), with the values themselves left out.
fn shape(objects: &[Value]) -> BTreeSet<(String, String, String, BTreeSet<String>)> {
    fn paths(v: &Value, at: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    // Hashes of the content and provenance change with any value.
                    if k == "plinth.dev/spec-hash" {
                        continue;
                    }
                    let p = format!("{at}/{k}");
                    out.insert(p.clone());
                    paths(x, &p, out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.insert(p.clone());
                    paths(x, &p, out);
                }
            }
            _ => {}
        }
    }
    objects
        .iter()
        .map(|o| {
            let mut p = BTreeSet::new();
            paths(o, "", &mut p);
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&o["apiVersion"]),
                s(&o["kind"]),
                s(&o["metadata"]["namespace"]),
                p,
            )
        })
        .collect()
}

/// A YAML document as JSON, read by plinth's own parser.
fn yaml(text: &str) -> Value {
    let file: std::sync::Arc<str> = std::sync::Arc::from("app.yaml");
    let (docs, diags) =
        plinth::parse::yaml::parse_documents(&file, text, plinth::parse::YamlLimits::default());
    assert!(diags.is_empty());
    docs[0].root.to_json()
}

/// The single App file of a golden repository: (path, text).
fn app_file(files: &BTreeMap<String, String>) -> (String, String) {
    files
        .iter()
        .find(|(p, _)| p.starts_with("apps/"))
        .map(|(p, t)| (p.clone(), t.clone()))
        .unwrap()
}

/// Set `values.<path>` of the App (JSON is YAML, so the App is rewritten as JSON).
fn with_value(
    files: &BTreeMap<String, String>,
    path: &[String],
    v: Value,
) -> BTreeMap<String, String> {
    let (p, text) = app_file(files);
    let mut app = yaml(&text);
    let mut at = &mut app["spec"]["values"];
    for k in &path[..path.len() - 1] {
        if !at[k.as_str()].is_object() {
            at[k.as_str()] = json!({});
        }
        at = &mut at[k.as_str()];
    }
    at[path[path.len() - 1].as_str()] = v;
    let mut files = files.clone();
    files.insert(p, serde_json::to_string_pretty(&app).unwrap());
    files
}

/// The template's values schema with every constraint on strings removed (patterns, formats,
/// enums, lengths), so that any string reaches the template: the engine, not the schema, is
/// under test.
fn unconstrained(files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "pattern",
                    "format",
                    "enum",
                    "const",
                    "maxLength",
                    "minLength",
                    "not",
                ] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut files = files.clone();
    for (p, t) in files.iter_mut() {
        if p.ends_with(".schema.json") {
            let mut s: Value = serde_json::from_str(t).unwrap();
            strip(&mut s);
            *t = serde_json::to_string_pretty(&s).unwrap();
        }
    }
    files
}

/// The paths of the string-typed properties a values schema declares (nested objects
/// included), e.g. `["ingress", "host"]`.
fn string_values(files: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    fn walk(s: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Some(props) = s["properties"].as_object() {
            for (k, p) in props {
                at.push(k.clone());
                if p["type"] == "string" {
                    out.push(at.clone());
                }
                walk(p, at, out);
                at.pop();
            }
        }
    }
    let schema = files
        .iter()
        .find(|(p, _)| p.ends_with(".schema.json"))
        .map(|(_, t)| serde_json::from_str::<Value>(t).unwrap())
        .unwrap();
    let mut out = Vec::new();
    walk(&schema, &mut Vec::new(), &mut out);
    out
}

const CASES: [&str; 4] = [
    "app-jupyterlab",
    "app-label-studio",
    "app-mlflow",
    "app-streamlit",
];

/// The audit's attack: a value holding a document separator and a RoleBinding, written by a
/// template as `{{ values.v }}`, stays one string.
#[test]
fn a_value_cannot_add_an_object() {
    let payload = "x\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: pwn}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects: [{kind: Group, name: \"system:authenticated\"}]";
    let mut files = golden_repo("app-streamlit");
    files.insert(
        "templates/raw.yaml.j2".into(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ app.name }}\ndata:\n  motd: {{ values.motd }}\n  block: |\n    echo {{ values.motd }}\n".into(),
    );
    let (_, t) = app_file(&files);
    let other = yaml(&t);
    let raw = json!({
        "apiVersion": "plinth.dev/v1alpha1", "kind": "App", "metadata": {"name": "raw"},
        "spec": {"project": other["spec"]["project"], "template": "raw", "values": {"motd": payload}},
    });
    files.insert("apps/raw.yaml".into(), raw.to_string());
    let objects = rendered(&files).expect("builds");
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert!(!kinds.contains(&"RoleBinding"), "{kinds:?}");
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "raw")
        .expect("the raw App's ConfigMap");
    assert_eq!(cm["data"]["motd"], payload);
    assert!(
        cm["data"]["block"]
            .as_str()
            .unwrap()
            .starts_with("echo \"x\\n---\\napiVersion")
    );
}

/// The audit's other attack: JupyterLab's `pipIndexUrl` with a newline is refused by the
/// template's schema, and without the schema it can only be an environment variable's value.
#[test]
fn the_jupyterlab_index_url_cannot_smuggle_an_object() {
    let payload = "https://pypi.example/simple\n---\nkind: RoleBinding";
    let files = golden_repo("app-jupyterlab");
    let attacked = with_value(&files, &["pipIndexUrl".to_owned()], json!(payload));
    let errors = rendered(&attacked).expect_err("refused by the values schema");
    assert!(errors.iter().any(|e| e.starts_with("T005")), "{errors:?}");

    let objects = rendered(&unconstrained(&attacked)).expect("renders");
    assert_eq!(
        shape(&objects),
        shape(
            &rendered(&with_value(
                &files,
                &["pipIndexUrl".to_owned()],
                json!("https://pypi.example/simple")
            ))
            .unwrap()
        )
    );
    let env = objects
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .map(|o| o["spec"]["template"]["spec"]["containers"][0]["env"].clone())
        .unwrap();
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "PIP_INDEX_URL" && e["value"] == payload)
    );
}

/// Strings built to break YAML: structure characters, document markers, line breaks YAML
/// knows (NEL, LS, PS), quotes, tags, anchors, template syntax, and random text.
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\n---\nkind: RoleBinding\n",
        "a: b",
        ": ",
        " #x",
        "{x: y}",
        "[1, 2]",
        "]",
        "}",
        ",",
        "'",
        "\"",
        "\\",
        "|",
        ">-",
        "&a",
        "*a",
        "!!str",
        "- x",
        "\u{2028}",
        "\u{2029}",
        "\u{85}",
        "\r\n",
        "\t",
        "{{ 1 }}",
        "{% raw %}",
        "%YAML 1.2",
        "...",
        "\u{feff}",
        "?",
        "@",
        "`",
        "\u{202e}",
        "\0",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 1..6).prop_map(|v| format!("v{}", v.concat())),
        "v[\\PC\\n:#{}\\[\\],'\"-]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_global_rejects: 4096, ..ProptestConfig::default() })]

    /// Any string in any string value of any shipped template: the build either refuses it
    /// (a filter rejects it, a name is invalid) or renders objects of the same shape as
    /// with an ordinary value.
    #[test]
    fn random_strings_never_change_the_rendered_objects(
        case in prop::sample::select(CASES.to_vec()),
        pick in any::<prop::sample::Index>(),
        s in hostile(),
    ) {
        let files = unconstrained(&golden_repo(case));
        let paths = string_values(&files);
        prop_assert!(!paths.is_empty());
        let path = pick.get(&paths).clone();
        let baseline = rendered(&with_value(&files, &path, json!("plain-value")));
        // Values with a format of their own (a duration, a size) refuse `plain-value`: then
        // nothing to compare with.
        prop_assume!(baseline.is_ok());
        match rendered(&with_value(&files, &path, json!(s))) {
            Ok(objects) => prop_assert_eq!(shape(&objects), shape(&baseline.unwrap()), "{:?} = {:?}", path, s),
            Err(errors) => {
                // Refused, never by the YAML of the output being broken or split.
                prop_assert!(errors.iter().all(|e| !e.contains("not valid YAML") && !e.contains("part of a YAML scalar")), "{:?} = {:?}: {:?}", path, s, errors);
            }
        }
    }
}
