//! `plinth schema`: the JSON Schema of a spec kind.

use std::io::Write;

use clap::Args;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Kind (`Project`, `Dataset`, ...); every kind at once when absent.
    pub kind: Option<String>,
}

pub(super) fn schema(args: SchemaArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let all = crate::schema::generate_all();
    let text = match &args.kind {
        None => all.get("plinth.schema.json").cloned().unwrap_or_default(),
        Some(k) => match crate::model::Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(k))
        {
            Some(kind) => crate::schema::committed(kind).to_owned(),
            None => anyhow::bail!(
                "unknown kind `{k}`; the kinds are {}",
                crate::model::Kind::ALL
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    out.write_all(text.as_bytes())?;
    Ok(0)
}
