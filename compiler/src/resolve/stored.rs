//! Stored reads: what a store ([`super::FileStore`]) kept of reading a file, as it is read
//! back — each document's spec deserialized by the kind its read names in the same pass over
//! the store's text, not scanned once as JSON and parsed again.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::diag::Diagnostic;
use crate::model::{
    AppSpec, DatasetSpec, Envelope, GpuQuotaSpec, Kind, ModelRolloutSpec, PlatformSpec, ProjectSpec,
};

/// A file's read as a store gives it back (see [`super::FileRead`]).
#[derive(Debug, Deserialize)]
pub struct FileReadRef<'a> {
    pub parse: Vec<Diagnostic>,
    #[serde(borrow)]
    pub docs: Vec<DocReadRef<'a>>,
}

/// One document of a [`FileReadRef`].
#[derive(Debug)]
pub struct DocReadRef<'a> {
    pub index: usize,
    pub read: crate::parse::Read,
    /// What it typed as, when it typed.
    pub typed: Option<TypedRef<'a>>,
    pub diagnostics: Vec<Diagnostic>,
    /// A project's outline and the sum of it and its JSON (see [`super::DocRead`]).
    pub outline: Option<&'a RawValue>,
    pub sum: Option<u32>,
}

/// A typed document's spec: its JSON (a read added in this run), or deserialized as it was read
/// back.
#[derive(Debug)]
pub enum TypedRef<'a> {
    Json(&'a RawValue),
    Read(Box<AnyEnvelope>),
}

/// A document of any kind, deserialized.
#[derive(Debug)]
pub enum AnyEnvelope {
    Platform(Envelope<PlatformSpec>),
    Project(Envelope<ProjectSpec>),
    Dataset(Envelope<DatasetSpec>),
    GpuQuota(Envelope<GpuQuotaSpec>),
    ModelRollout(Envelope<ModelRolloutSpec>),
    App(Envelope<AppSpec>),
}

impl AnyEnvelope {
    /// A document of `kind`, deserialized.
    pub fn of<'de, D: Deserializer<'de>>(kind: Kind, d: D) -> Result<AnyEnvelope, D::Error> {
        Ok(match kind {
            Kind::Platform => AnyEnvelope::Platform(Envelope::deserialize(d)?),
            Kind::Project => AnyEnvelope::Project(Envelope::deserialize(d)?),
            Kind::Dataset => AnyEnvelope::Dataset(Envelope::deserialize(d)?),
            Kind::GpuQuota => AnyEnvelope::GpuQuota(Envelope::deserialize(d)?),
            Kind::ModelRollout => AnyEnvelope::ModelRollout(Envelope::deserialize(d)?),
            Kind::App => AnyEnvelope::App(Envelope::deserialize(d)?),
        })
    }

    /// Its `kind` field (checked against the kind its read names).
    pub fn kind(&self) -> &str {
        match self {
            AnyEnvelope::Platform(e) => &e.kind,
            AnyEnvelope::Project(e) => &e.kind,
            AnyEnvelope::Dataset(e) => &e.kind,
            AnyEnvelope::GpuQuota(e) => &e.kind,
            AnyEnvelope::ModelRollout(e) => &e.kind,
            AnyEnvelope::App(e) => &e.kind,
        }
    }
}

/// The fields of a stored document (any other is skipped).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Field {
    Index,
    Read,
    Typed,
    Diagnostics,
    Outline,
    Sum,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for DocReadRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["index", "read", "typed", "diagnostics", "outline", "sum"];
        d.deserialize_struct("DocRead", FIELDS, DocVisitor(std::marker::PhantomData))
    }
}

struct DocVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for DocVisitor<'a> {
    type Value = DocReadRef<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a stored document read")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<DocReadRef<'a>, M::Error> {
        let mut index = None;
        let mut read: Option<crate::parse::Read> = None;
        let mut typed = None;
        let mut diagnostics = None;
        let (mut outline, mut sum) = (None, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Index => index = Some(map.next_value()?),
                Field::Read => read = Some(map.next_value()?),
                // Its kind is known (the read is written first): deserialized as that kind.
                Field::Typed => {
                    let kind = read.as_ref().and_then(|r| r.kind.as_deref());
                    typed = match kind.and_then(Kind::parse) {
                        // Typed when first read ([`super::later`]): most are not read.
                        Some(Kind::Project) => map
                            .next_value::<Option<&'de RawValue>>()?
                            .map(TypedRef::Json),
                        Some(kind) => map.next_value_seed(ByKind(kind))?,
                        None => map
                            .next_value::<Option<&'de RawValue>>()?
                            .map(TypedRef::Json),
                    };
                }
                Field::Diagnostics => diagnostics = Some(map.next_value()?),
                Field::Outline => outline = map.next_value()?,
                Field::Sum => sum = map.next_value()?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(DocReadRef {
            index: index.ok_or_else(|| de::Error::missing_field("index"))?,
            read: read.ok_or_else(|| de::Error::missing_field("read"))?,
            typed,
            diagnostics: diagnostics.ok_or_else(|| de::Error::missing_field("diagnostics"))?,
            outline,
            sum,
        })
    }
}

/// A document's typed spec, deserialized as `kind` (null: it did not type).
struct ByKind(Kind);

impl<'de> DeserializeSeed<'de> for ByKind {
    type Value = Option<TypedRef<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ByKind {
    type Value = Option<TypedRef<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a `{}` document or null", self.0.as_str())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let any = AnyEnvelope::of(self.0, d)?;
        Ok(Some(TypedRef::Read(Box::new(any))))
    }
}
