//! Apps: project, template, instance type, priority class and the datasets they mount.

use super::*;

impl<'a> Cx<'a> {
    /// `values.datasets`, by the convention of the template library, names the datasets an
    /// App mounts: each must be one the project may use (granted to it, or global).
    pub(super) fn app_datasets(&self, a: &'a Object<crate::model::AppSpec>, d: &mut Diagnostics) {
        let Some(serde_json::Value::Array(wanted)) = a.spec.values.get("datasets") else {
            return;
        };
        let project = a.spec.project.as_str();
        let usable = self.app_datasets_of(project);
        for (i, name) in wanted.iter().enumerate() {
            let Some(name) = name.as_str() else { continue };
            if usable.contains(&name) {
                continue;
            }
            let at = a.at_item("spec.values.datasets", i, "");
            match self.specs.datasets.get(name) {
                Some(ds) => d.push(
                    Diagnostic::new(
                        Code::UnknownDataset,
                        format!("dataset `{name}` is not granted to project `{project}`"),
                    )
                    .at(at)
                    .related(ds.at("spec.access").note("who may use it"))
                    .hint(format!(
                        "add `{{project: {project}}}` (read-only) to its `spec.access`, or use one the project may: {}",
                        list(usable.iter())
                    )),
                ),
                None => d.push(unknown(
                    Code::UnknownDataset,
                    "dataset",
                    name,
                    at,
                    usable.iter().copied(),
                )),
            }
        }
    }

    pub(super) fn app(&self, a: &'a Object<crate::model::AppSpec>, d: &mut Diagnostics) {
        let project = self.specs.projects.get(&a.spec.project);
        if let Some(pc) = &a.spec.priority_class {
            let pool = a
                .spec
                .instance_type
                .as_deref()
                .and_then(|it| self.its().get(it))
                .and_then(|(_, p)| *p);
            self.priority_class_ref(a, pc, pool, d);
        }
        if project.is_none() {
            self.project_ref(&a.spec.project, a.at("spec.project"), d);
        }
        if project.is_some() {
            self.app_datasets(a, d);
        }
        let path = format!("templates/{}.yaml.j2", a.spec.template);
        if self.snapshot.get(&path).is_none() {
            let known: Vec<&str> = self
                .snapshot
                .files
                .iter()
                .filter_map(|f| {
                    f.path
                        .strip_prefix("templates/")
                        .and_then(|p| p.strip_suffix(".yaml.j2"))
                })
                .collect();
            d.push(
                unknown(
                    Code::UnknownTemplate,
                    "template",
                    &a.spec.template,
                    a.at("spec.template"),
                    known.iter().copied(),
                )
                .hint(
                    match did_you_mean(&a.spec.template, known.iter().copied()) {
                        Some(s) => format!(
                            "did you mean `{s}`? templates live in `templates/<name>.yaml.j2`"
                        ),
                        None => format!("add `{path}` to the platform repository"),
                    },
                ),
            );
        }
        if let Some(it) = &a.spec.instance_type {
            self.instance_type_use(it, project, a.at("spec.instanceType"), d);
        }
        if let Some(p) = project {
            let lives = self.placement(p);
            for (i, c) in a.spec.clusters.iter().enumerate() {
                let at = a.at_item("spec.clusters", i, "");
                if !self.clusters().contains(&c.as_str()) {
                    d.push(unknown(
                        Code::UnknownCluster,
                        "cluster",
                        c,
                        at,
                        self.clusters().into_iter(),
                    ));
                } else if !lives.contains(&c.as_str()) {
                    d.push(
                        Diagnostic::new(
                            Code::GrantCluster,
                            format!(
                                "project `{}` does not live on cluster `{c}`: the app cannot run there",
                                a.spec.project
                            ),
                        )
                        .at(at)
                        .hint(format!("the project lives on {}", list(&lives))),
                    );
                }
            }
        }
    }
}
