//! The --api table: each preset is a set of shaping flags (explicit flags win), and the flags
//! as given, from which the codec is made.

use crate::cli::{Api, Set};

/// The shaping flags, as given.
pub struct Flags<'a> {
    pub api: Option<Api>,
    pub input: &'a Option<String>,
    pub template: &'a Option<String>,
    pub results: &'a Option<String>,
    pub result: &'a Option<String>,
    pub index: &'a Option<String>,
    pub merge: &'a Option<String>,
    pub single: bool,
    pub model: &'a Option<String>,
    pub sets: &'a [Set],
    pub v2_input: &'a Option<String>,
    pub v2_datatype: &'a Option<String>,
    pub v2_output: &'a Option<String>,
    /// Each result line says which record it answers (--tag).
    pub tag: bool,
}

/// The settings each preset stands for.
pub struct Preset {
    pub(super) template: &'static str,
    pub(super) results: Option<&'static str>,
    pub(super) result: Option<&'static str>,
    pub(super) index: Option<&'static str>,
    pub(super) single: bool,
    pub(super) chat: bool,
    pub(super) v2: bool,
    pub(super) needs_model: bool,
    /// Each record is a whole request of an OpenAI batch file.
    pub(super) requests: bool,
}

pub const PLAIN: Preset = Preset {
    template: "$batch",
    results: None,
    result: None,
    index: None,
    single: false,
    chat: false,
    v2: false,
    needs_model: false,
    requests: false,
};

pub fn preset(api: Api) -> Preset {
    match api {
        Api::Tfserving => Preset {
            template: r#"{"instances": $batch}"#,
            results: Some("/predictions"),
            ..PLAIN
        },
        Api::V2 => Preset { v2: true, ..PLAIN },
        Api::OpenaiEmbeddings => Preset {
            template: r#"{"input": $batch}"#,
            results: Some("/data"),
            result: Some("/embedding"),
            index: Some("/index"),
            needs_model: true,
            ..PLAIN
        },
        Api::OpenaiCompletions => Preset {
            template: r#"{"prompt": $batch}"#,
            results: Some("/choices"),
            result: Some("/text"),
            index: Some("/index"),
            needs_model: true,
            ..PLAIN
        },
        Api::OpenaiChat => Preset {
            template: r#"{"messages": $record}"#,
            result: Some("/choices/0/message/content"),
            single: true,
            chat: true,
            needs_model: true,
            ..PLAIN
        },
        Api::Tei => Preset {
            template: r#"{"inputs": $batch}"#,
            ..PLAIN
        },
        Api::OpenaiBatch => Preset {
            template: "$record",
            single: true,
            requests: true,
            ..PLAIN
        },
        Api::OllamaEmbed => Preset {
            template: r#"{"input": $batch}"#,
            results: Some("/embeddings"),
            needs_model: true,
            ..PLAIN
        },
    }
}
