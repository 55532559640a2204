//! The codec: what is sent for each record, the request body around the inputs, where the
//! results are in the answer and how each result is written. The default (a bare JSON
//! array each way) takes a fast path; the flags --input, --template, --results, --result,
//! --index, --merge, --single, --set and --model change it, and each --api preset is a set of
//! them (explicit flags win). Bodies are built by splicing record text, never by serialising
//! records again.

use std::fmt::Write as _;

use serde_json::value::RawValue;

use crate::cli::Api;
use crate::input::Record;
use crate::report::quote;
use crate::wire::json::{self, Pointer};
use crate::wire::presets::{Flags, PLAIN, Preset, preset};
use crate::wire::requests::{self, Failed, Ids};

/// How requests are made and answers read, chosen once: one [`Way`] of talking, what is sent
/// for each record, and how each result is written.
#[derive(Debug)]
pub struct Codec {
    select: Select,
    way: Way,
    /// Output the record with its result under this member (--merge).
    pub merge: Option<String>,
    /// Wrap each line as {"file", "line", "result"} (--tag).
    tag: bool,
}

/// What an answer says beside its body, for the codecs that write it down.
pub struct Meta<'a> {
    pub status: u16,
    /// The x-request-id header's value.
    pub request_id: Option<&'a str>,
}

/// What is sent for each record.
#[derive(Debug)]
struct Select {
    /// The part of each record that is sent (--input).
    input: Option<Pointer>,
    /// Chat input: a string record is one user message; an object gives its `messages`.
    chat: bool,
}

/// One way of talking to a server: how a request is made of the inputs, and its answer read.
/// A new way is a new variant here.
#[derive(Debug)]
enum Way {
    /// A bare JSON array each way: the records as read, the results as answered. The fast
    /// path: records are spliced into the body without a look at what they hold.
    Plain,
    /// The inputs as an array at `$batch` in a template, between `before` and `after`.
    Batch {
        before: String,
        after: String,
        answer: Answer,
    },
    /// One input per request, at `$record` in a template; the answer holds its one result.
    Single {
        before: String,
        after: String,
        answer: Answer,
    },
    /// Open Inference Protocol tensors (--api v2); `fields` open the body's object.
    Tensor { fields: String, v2: V2 },
    /// OpenAI batch files (--api openai-batch): each record is a whole request, sent as its
    /// `body` to its `url`; the answer is written in the batch output format, with `ids`.
    Requests { ids: Ids },
}

/// Where the results are in an answer.
#[derive(Debug)]
struct Answer {
    /// Where the results array is (--results).
    results: Option<Pointer>,
    /// The result within each element (--result).
    result: Option<Pointer>,
    /// The field of each element that says which input it answers (--index).
    index: Option<Pointer>,
}

#[derive(Debug)]
struct V2 {
    input: String,
    datatype: Option<String>,
    output: Option<String>,
}

impl Codec {
    /// The codec the flags ask for: its --api preset, with explicit flags over it. Errors are
    /// usage errors (a bad pointer, a template without its placeholder, a missing --model).
    pub fn new(flags: &Flags) -> Result<Codec, String> {
        let preset = flags.api.map_or(PLAIN, preset);
        if preset.requests {
            let shaping = [
                ("--template", flags.template.is_some()),
                ("--input", flags.input.is_some()),
                ("--results", flags.results.is_some()),
                ("--result", flags.result.is_some()),
                ("--index", flags.index.is_some()),
                ("--merge", flags.merge.is_some()),
                ("--model", flags.model.is_some()),
                ("--set", !flags.sets.is_empty()),
                ("--single", flags.single),
            ];
            if let Some((flag, _)) = shaping.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "--api openai-batch sends each line's body as it is and writes each answer \
                     whole: {flag} does not apply"
                ));
            }
        }
        let single = flags.single || preset.single;
        let fields = fields(flags, &preset)?;
        let v2 = (preset.v2 && flags.template.is_none()).then(|| V2 {
            input: flags.v2_input.clone().unwrap_or_else(|| "input-0".into()),
            datatype: flags.v2_datatype.clone(),
            output: flags.v2_output.clone(),
        });
        let around = match v2 {
            Some(v2) => {
                // The tensor is built per batch; the fields go beside "inputs".
                clashes(flags, &fields, &["inputs".into()], "the --api v2 tensor")?;
                Around::Tensor(with_fields("{}", &fields)?, v2)
            }
            None => {
                unused_v2_flags(flags)?;
                let (before, after) = halves(flags, &preset, single, &fields)?;
                Around::Template(before, after)
            }
        };
        let pointer = |flag: &str, given: &Option<String>, default: Option<&str>| {
            given
                .as_deref()
                .or(default)
                .map(|text| Pointer::parse(text).map_err(|e| format!("--{flag}: {e}")))
                .transpose()
        };
        let input = pointer("input", flags.input, None)?;
        let answer = Answer {
            results: pointer("results", flags.results, preset.results)?,
            result: pointer("result", flags.result, preset.result)?,
            index: pointer("index", flags.index, preset.index)?,
        };
        let plain = answer.is_plain() && input.is_none() && flags.merge.is_none() && !preset.chat;
        let way = match around {
            Around::Tensor(fields, v2) => Way::Tensor { fields, v2 },
            Around::Template(..) if preset.requests => Way::Requests { ids: Ids::new() },
            Around::Template(before, after) if single => Way::Single {
                before,
                after,
                answer,
            },
            Around::Template(before, after) if plain && before.is_empty() && after.is_empty() => {
                Way::Plain
            }
            Around::Template(before, after) => Way::Batch {
                before,
                after,
                answer,
            },
        };
        Ok(Codec {
            select: Select {
                input,
                chat: preset.chat,
            },
            way,
            merge: flags.merge.clone(),
            tag: flags.tag,
        })
    }

    /// Whether each request carries one record.
    pub fn single(&self) -> bool {
        matches!(self.way, Way::Single { .. } | Way::Requests { .. })
    }

    /// Whether each record is a whole request with its own id (--api openai-batch).
    pub fn requests(&self) -> bool {
        matches!(self.way, Way::Requests { .. })
    }

    /// The record's own id, when records are requests that have one (custom_id).
    pub fn id<'a>(&self, record: &'a RawValue) -> Option<&'a str> {
        match self.way {
            Way::Requests { .. } => requests::custom_id(record),
            _ => None,
        }
    }

    /// The path, under the base URL, of the request for `records`, when each request says
    /// its own.
    pub fn path<'a>(&self, records: &'a [Record]) -> Option<&'a str> {
        match (&self.way, records) {
            (Way::Requests { .. }, [record]) => requests::request(&record.json).ok().map(|r| r.url),
            _ => None,
        }
    }

    /// What is sent for `record`, or why it cannot be sent (it names the flag at fault).
    fn input<'a>(&self, record: &'a RawValue) -> Result<Input<'a>, String> {
        if self.merge.is_some() && !json::is_object(record) {
            return Err("--merge needs each record to be a JSON object".into());
        }
        if let Way::Requests { .. } = self.way {
            return requests::request(record).map(|request| Input::Text(request.body));
        }
        let part = match &self.select.input {
            None => record,
            Some(pointer) => pointer
                .find(record)
                .ok_or_else(|| format!("the record has no {pointer} (--input)"))?,
        };
        if self.select.chat {
            return chat_messages(part);
        }
        Ok(Input::Text(part))
    }

    /// What is sent for `record`, as the bytes it puts in a body, in pieces; none when it
    /// cannot be sent. The result cache (--cache) keys each record by it.
    pub fn sent<'a>(&self, record: &'a RawValue) -> Option<[&'a [u8]; 3]> {
        if let Way::Requests { .. } = self.way {
            // Where it goes is part of it: the path has no space.
            let request = requests::request(record).ok()?;
            return Some([request.url.as_bytes(), b" ", request.body.get().as_bytes()]);
        }
        Some(self.input(record).ok()?.pieces())
    }

    /// What is sent for each of a batch's records, or why a record cannot be sent; none on
    /// the plain path, where every record is sent as it is. With --api v2, a row of another
    /// length than the batch's first fails alone, so that the rows around it still make a
    /// tensor.
    pub fn inputs<'a>(
        &self,
        records: impl Iterator<Item = &'a RawValue>,
    ) -> Option<Vec<Result<Input<'a>, String>>> {
        if let Way::Plain = self.way {
            return None;
        }
        let mut inputs: Vec<_> = records.map(|record| self.input(record)).collect();
        if let Way::Tensor { .. } = self.way {
            let mut first = None;
            for input in &mut inputs {
                let Ok(row) = input else { continue };
                let width = json::elements(row.text()).map(|values| values.len());
                match first {
                    None => first = Some(width),
                    Some(first) if first != width => *input = Err(uneven(width, first)),
                    Some(_) => {}
                }
            }
        }
        Some(inputs)
    }

    /// The body of the request for `records`, whose inputs (see [`Codec::inputs`]; none on
    /// the plain path) are `inputs`; or, when the codec cannot hold them, which record is at
    /// fault and why.
    pub fn body(&self, records: &[Record], inputs: &[Input]) -> Result<Vec<u8>, String> {
        let made = match &self.way {
            Way::Plain => return Ok(plain_body(records)),
            Way::Batch { before, after, .. } => Ok(spliced(before, after, inputs, true)),
            Way::Single { before, after, .. } => Ok(spliced(before, after, inputs, false)),
            Way::Requests { .. } => Ok(spliced("", "", inputs, false)),
            Way::Tensor { fields, v2 } => v2.body(fields, inputs),
        };
        made.map_err(|e| {
            let at = e.row.and_then(|row| records.get(row));
            match at {
                Some(record) => format!("{}: {}", record.at, e.message),
                None => e.message,
            }
        })
    }

    /// The `expected` results in a 2xx body, found where the codec says; or what is wrong
    /// with it, with the start of the body when its shape is at fault.
    pub fn results(
        &self,
        body: &[u8],
        expected: usize,
        meta: Meta,
    ) -> Result<Vec<Box<RawValue>>, String> {
        // The plain path: a bare array of the right length, taken apart in one go. Anything
        // else takes the general path, which says what is wrong.
        if let Way::Plain = self.way {
            if let Ok(results) = serde_json::from_slice::<Vec<Box<RawValue>>>(body) {
                if results.len() == expected {
                    return Ok(results);
                }
            }
        }
        let answer: &RawValue = serde_json::from_slice(body)
            .map_err(|e| format!("not valid JSON ({e}); body: {}", quote(body)))?;
        let read = match &self.way {
            Way::Plain => Answer::PLAIN.read(answer, expected, false),
            Way::Batch { answer: at, .. } => at.read(answer, expected, false),
            Way::Single { answer: at, .. } => at.read(answer, expected, true),
            Way::Tensor { v2, .. } => v2.results(answer, expected),
            Way::Requests { .. } => Ok(vec![requests::response(
                meta.status,
                meta.request_id,
                answer,
            )]),
        };
        read.map_err(|e| match e {
            Unusable::Shape(problem) => format!("{problem}; body: {}", quote(body)),
            Unusable::Content(problem) => problem,
        })
    }

    /// Whether a failed record's line says how it failed (else it is `null`).
    pub fn writes_failures(&self) -> bool {
        self.tag || self.requests()
    }

    /// Whether results are written as they come (the fast path).
    pub fn writes_results_as_they_are(&self) -> bool {
        self.merge.is_none() && !self.tag && !self.requests()
    }

    /// The line written for `record` answered by `result`: merged into the record (--merge),
    /// as a batch output line (--api openai-batch), tagged (--tag).
    pub fn line(&self, record: &Record, result: Box<RawValue>) -> Box<RawValue> {
        let line = match (&self.merge, &self.way) {
            (_, Way::Requests { ids }) => ids.answered(&record.json, &result),
            (Some(field), _) => json::with_member(&record.json, field, &result)
                .and_then(|merged| RawValue::from_string(merged).ok())
                .unwrap_or(result),
            (None, _) => result,
        };
        self.tagged(record, line)
    }

    /// The line that stands for `record`, which failed, under --on-error null: `null`, or the
    /// batch output line that says how it failed (--api openai-batch); tagged (--tag).
    pub fn failed_line(&self, record: &Record, failed: &Failed) -> Box<RawValue> {
        let line = match &self.way {
            Way::Requests { ids } => ids.failed(&record.json, failed),
            _ => RawValue::NULL.to_owned(),
        };
        self.tagged(record, line)
    }

    /// `line` as {"file": ..., "line": N, "result": line} with --tag.
    fn tagged(&self, record: &Record, line: Box<RawValue>) -> Box<RawValue> {
        if !self.tag {
            return line;
        }
        let file = serde_json::to_string(&*record.at.source).unwrap_or_else(|_| "null".into());
        let tagged = format!(
            r#"{{"file":{file},"line":{},"result":{}}}"#,
            record.at.line,
            line.get()
        );
        RawValue::from_string(tagged).unwrap_or(line)
    }
}

/// `before`, the inputs (as an array when `array`, else the one input), and `after`.
fn spliced(before: &str, after: &str, inputs: &[Input], array: bool) -> Vec<u8> {
    let size = before.len() + after.len() + inputs.iter().map(|i| i.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(before.as_bytes());
    if array {
        body.push(b'[');
        for (i, input) in inputs.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            input.write(&mut body);
        }
        body.push(b']');
    } else {
        for input in inputs {
            input.write(&mut body);
        }
    }
    body.extend_from_slice(after.as_bytes());
    body
}

impl Answer {
    /// The results are the answer itself, an array.
    const PLAIN: Answer = Answer {
        results: None,
        result: None,
        index: None,
    };

    fn is_plain(&self) -> bool {
        self.results.is_none() && self.result.is_none() && self.index.is_none()
    }

    /// One result per input, in input order, from an answer; or what is wrong with it. With
    /// `single`, an answer without --results is the one result itself.
    fn read(
        &self,
        answer: &RawValue,
        expected: usize,
        single: bool,
    ) -> Result<Vec<Box<RawValue>>, Unusable> {
        let found = match &self.results {
            None => answer,
            Some(pointer) => pointer.find(answer).ok_or_else(|| {
                Unusable::Shape(format!(
                    "the answer has no {pointer} (--results){}",
                    try_results(answer)
                ))
            })?,
        };
        let mut elements = if single && self.results.is_none() {
            vec![found]
        } else {
            json::elements(found).ok_or_else(|| {
                let (kind, hint) = (kind(found), try_results(answer));
                Unusable::Shape(match &self.results {
                    Some(pointer) => {
                        format!("{pointer} in the answer is {kind}, not an array (--results){hint}")
                    }
                    None => {
                        format!("expected a JSON array of results, but the answer is {kind}{hint}")
                    }
                })
            })?
        };
        if elements.len() != expected {
            return Err(Unusable::Content(format!(
                "expected {expected} results (one per record), got {}",
                elements.len()
            )));
        }
        if let Some(index) = &self.index {
            elements = place(elements, index).map_err(Unusable::Content)?;
        }
        elements
            .into_iter()
            .enumerate()
            .map(|(i, element)| {
                let result = match &self.result {
                    None => element,
                    Some(pointer) => pointer.find(element).ok_or_else(|| {
                        Unusable::Content(format!("result {i} has no {pointer} (--result)"))
                    })?,
                };
                Ok(result.to_owned())
            })
            .collect()
    }
}

/// The request body: a JSON array of the records' texts, exactly as read.
fn plain_body(records: &[Record]) -> Vec<u8> {
    let size = 2 + records
        .iter()
        .map(|r| r.json.get().len() + 1)
        .sum::<usize>();
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record.json.get().as_bytes());
    }
    body.push(b']');
    body
}

/// Why no results can be taken from an answer.
#[derive(Debug)]
enum Unusable {
    /// The answer is not shaped as expected; the start of it helps to see why.
    Shape(String),
    /// The answer is shaped as expected but says the wrong thing (a count, an index).
    Content(String),
}

/// What kind of JSON value `json` is, with its article, for a message.
fn kind(json: &RawValue) -> &'static str {
    match json.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// When `answer` is an object holding exactly one array, among its members or else among its
/// members' members: where that array is and the --results that reaches it, as the end of a
/// message ("; its member /results is an array of 32: try --results /results"). The same for
/// an answer that is an array itself. Otherwise nothing.
fn try_results(answer: &RawValue) -> String {
    if let Some(elements) = json::elements(answer) {
        return format!(
            "; the answer itself is an array of {}: try --results ''",
            elements.len()
        );
    }
    // The pointer to member `name` of the value at `parent`, escaped as RFC 6901 says.
    let pointer = |parent: &str, name: &str| {
        format!("{parent}/{}", name.replace('~', "~0").replace('/', "~1"))
    };
    let arrays_in = |object: &RawValue, parent: &str| -> Vec<(String, usize)> {
        json::members(object)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| {
                Some((pointer(parent, &name), json::elements(value)?.len()))
            })
            .collect()
    };
    let mut arrays = arrays_in(answer, "");
    if arrays.is_empty() {
        for (name, value) in json::members(answer).unwrap_or_default() {
            arrays.extend(arrays_in(value, &pointer("", &name)));
        }
    }
    match &arrays[..] {
        [(pointer, length)] => {
            format!("; its member {pointer} is an array of {length}: try --results {pointer}")
        }
        _ => String::new(),
    }
}

/// Why a body cannot be made: a record at fault (its position among the inputs), or the
/// batch as a whole.
#[derive(Debug)]
struct BodyError {
    row: Option<usize>,
    message: String,
}

/// What is sent for one record: its text (or part of it), or a chat message made from it.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Text(&'a RawValue),
    /// A string sent as the content of one user message.
    UserMessage(&'a RawValue),
}

/// What a user message is wrapped in.
const USER_MESSAGE: [&[u8]; 2] = [br#"[{"role":"user","content":"#, b"}]"];

impl<'a> Input<'a> {
    fn len(&self) -> usize {
        self.pieces().iter().map(|piece| piece.len()).sum()
    }

    /// The bytes it puts in a body, in pieces.
    fn pieces(&self) -> [&'a [u8]; 3] {
        match self {
            Input::Text(text) => [text.get().as_bytes(), b"", b""],
            Input::UserMessage(text) => [USER_MESSAGE[0], text.get().as_bytes(), USER_MESSAGE[1]],
        }
    }

    fn write(&self, body: &mut Vec<u8>) {
        for piece in self.pieces() {
            body.extend_from_slice(piece);
        }
    }

    fn text(&self) -> &RawValue {
        match self {
            Input::Text(text) | Input::UserMessage(text) => text,
        }
    }
}

/// A chat record: a string (one user message) or an object with `messages`.
fn chat_messages(record: &RawValue) -> Result<Input<'_>, String> {
    let text = record.get().trim_start();
    if text.starts_with('"') {
        return Ok(Input::UserMessage(record));
    }
    let messages = Pointer::parse("/messages").map_err(|e| e.to_string())?;
    match messages.find(record) {
        Some(messages) if json::elements(messages).is_some() => Ok(Input::Text(messages)),
        _ => Err("a chat record must be a string or an object with a \"messages\" array".into()),
    }
}

/// What a body is made around: a template's halves, or the fields beside a v2 tensor.
enum Around {
    Template(String, String),
    Tensor(String, V2),
}

/// The top-level fields --model and --set add to the body, as (name, JSON text).
fn fields(flags: &Flags, preset: &Preset) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    if let Some(model) = &flags.model {
        fields.push((
            "model".to_string(),
            serde_json::to_string(model).map_err(|e| e.to_string())?,
        ));
    } else if preset.needs_model {
        return Err(format!(
            "--api {} needs --model NAME",
            flags.api.map(|a| a.name()).unwrap_or_default()
        ));
    }
    for set in flags.sets {
        if fields.iter().any(|(key, _)| key == &set.key) {
            return Err(match (set.key.as_str(), &flags.model) {
                ("model", Some(_)) => "--model and --set model both set \"model\"".into(),
                (key, _) => format!("--set {key} is given twice"),
            });
        }
        fields.push((set.key.clone(), set.value.get().to_owned()));
    }
    Ok(fields)
}

/// The body's template, with `fields` added, split at its `$batch` (or, `single`, `$record`).
fn halves(
    flags: &Flags,
    preset: &Preset,
    single: bool,
    fields: &[(String, String)],
) -> Result<(String, String), String> {
    let token = if single { "$record" } else { "$batch" };
    // --single without a preset sends the record itself.
    let default = if single && flags.api.is_none() {
        "$record"
    } else {
        preset.template
    };
    let template = flags.template.as_deref().unwrap_or(default);
    split_template(template, token)?;
    if !fields.is_empty() {
        let Some(taken) = top_level_keys(template, token) else {
            return Err(no_place_for_fields(flags, single));
        };
        let from = match flags.api {
            Some(api) if flags.template.is_none() => format!("from --api {}", api.name()),
            _ => "from --template".into(),
        };
        clashes(flags, fields, &taken, &from)?;
    }
    split_template(&with_fields(template, fields)?, token)
}

/// The error for --model or --set when the body is not an object: what the body is instead.
fn no_place_for_fields(flags: &Flags, single: bool) -> String {
    let given = match (&flags.model, flags.sets.is_empty()) {
        (Some(_), false) => "--model and --set have",
        (Some(_), true) => "--model has",
        (None, _) => "--set has",
    };
    let why = if flags.template.is_some() {
        "--template is not a JSON object".to_string()
    } else if single && flags.api.is_none() {
        "with --single and no --template the body is the record itself; give a --template \
         such as '{\"input\": $record}'"
            .to_string()
    } else if let Some(api) = flags.api {
        format!("the body of --api {} is not a JSON object", api.name())
    } else {
        "without --template (or an --api) the body is the bare JSON array of records; give a \
         --template such as '{\"input\": $batch}'"
            .to_string()
    };
    format!("{given} no place in the request: {why}")
}

/// Refuses a field (from --model or --set) the body already has among `taken`, which came
/// `from` there.
fn clashes(
    flags: &Flags,
    fields: &[(String, String)],
    taken: &[String],
    from: &str,
) -> Result<(), String> {
    match fields.iter().find(|(key, _)| taken.contains(key)) {
        Some((key, _)) => {
            let flag = match (key.as_str(), &flags.model) {
                ("model", Some(_)) => "--model".to_string(),
                _ => format!("--set {key}"),
            };
            Err(format!(
                "{flag}: the body already has a member \"{key}\" ({from})"
            ))
        }
        None => Ok(()),
    }
}

/// The names of the top-level members of `template` with `token` filled in, or None when
/// it is not an object.
fn top_level_keys(template: &str, token: &str) -> Option<Vec<String>> {
    let probe = template.replacen(token, "null", 1);
    let probe: &RawValue = serde_json::from_str(&probe).ok()?;
    let members = json::members(probe)?;
    Some(members.into_iter().map(|(key, _)| key).collect())
}

/// Refuses the --v2-* flags where there is no v2 tensor for them to shape.
fn unused_v2_flags(flags: &Flags) -> Result<(), String> {
    let given: Vec<&str> = [
        ("--v2-input", flags.v2_input.is_some()),
        ("--v2-datatype", flags.v2_datatype.is_some()),
        ("--v2-output", flags.v2_output.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    let (named, verb) = match given[..] {
        [] => return Ok(()),
        [one] => (one.to_string(), "applies"),
        _ => (given.join(" and "), "apply"),
    };
    Err(if flags.api == Some(Api::V2) {
        format!("{named} {verb} to the --api v2 tensor, which --template replaces")
    } else {
        format!("{named} only {verb} to --api v2")
    })
}

/// Adds top-level `fields` (name, JSON text) to the object `template`, at its start.
fn with_fields(template: &str, fields: &[(String, String)]) -> Result<String, String> {
    if fields.is_empty() {
        return Ok(template.to_owned());
    }
    let trimmed = template.trim_start();
    let Some(rest) = trimmed.strip_prefix('{') else {
        return Err("--set and --model need a --template that is a JSON object".into());
    };
    let mut out = String::from("{");
    for (name, value) in fields {
        let key = serde_json::to_string(name).map_err(|e| e.to_string())?;
        let _ = write!(out, "{key}:{value},");
    }
    if rest.trim_start().starts_with('}') {
        out.pop();
    }
    out.push_str(rest);
    Ok(out)
}

/// The template's text before and after its one `token`, checked to make JSON.
fn split_template(template: &str, token: &str) -> Result<(String, String), String> {
    let at = match json::placeholders(template, token)[..] {
        [at] => at,
        [] => {
            return Err(format!(
                "--template must hold the bare token {token} (outside quotes) where the input goes"
            ));
        }
        _ => return Err(format!("--template holds {token} more than once")),
    };
    let (before, after) = (&template[..at], &template[at + token.len()..]);
    let probe = format!("{before}null{after}");
    serde_json::from_str::<&RawValue>(&probe)
        .map_err(|e| format!("--template is not JSON once {token} is filled in: {e}"))?;
    Ok((before.to_owned(), after.to_owned()))
}

/// Elements put in the order their `index` field gives (servers may answer out of order).
fn place<'a>(elements: Vec<&'a RawValue>, index: &Pointer) -> Result<Vec<&'a RawValue>, String> {
    let mut placed: Vec<Option<&RawValue>> = vec![None; elements.len()];
    for element in elements {
        let at = index
            .find(element)
            .and_then(|i| i.get().trim().parse::<usize>().ok())
            .ok_or_else(|| format!("a result has no whole number at {index} (--index)"))?;
        match placed.get_mut(at) {
            Some(slot @ None) => *slot = Some(element),
            Some(Some(_)) => return Err(format!("two results have {index} {at} (--index)")),
            None => return Err(format!("a result has {index} {at}, past the last record")),
        }
    }
    placed
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("some records have no result with their {index}"))
}

impl V2 {
    /// `{"inputs": [{"name", "shape": [N, ...], "datatype", "data": [...]}]}`: the rows as one
    /// tensor, flattened in row-major order.
    fn body(&self, before: &str, inputs: &[Input]) -> Result<Vec<u8>, BodyError> {
        let rows: Vec<&RawValue> = inputs.iter().map(Input::text).collect();
        let (width, datatype) = tensor_of(&rows, self.datatype.as_deref())?;
        let mut body =
            String::with_capacity(rows.iter().map(|r| r.get().len() + 1).sum::<usize>() + 128);
        // `before` is "{}" or "{fields}": open it and add "inputs".
        let open = before.strip_suffix('}').unwrap_or("{");
        body.push_str(open);
        if open.len() > 1 {
            body.push(',');
        }
        let quote = |text: &str| {
            serde_json::to_string(text).map_err(|e| BodyError {
                row: None,
                message: e.to_string(),
            })
        };
        let (name, datatype) = (quote(&self.input)?, quote(&datatype)?);
        let shape = match width {
            Some(width) => format!("[{},{width}]", rows.len()),
            None => format!("[{},1]", rows.len()),
        };
        let _ = write!(
            body,
            r#""inputs":[{{"name":{name},"shape":{shape},"datatype":{datatype},"data":["#
        );
        let mut first = true;
        for row in &rows {
            let values = match width {
                Some(_) => json::elements(row).unwrap_or_default(),
                None => vec![*row],
            };
            for value in values {
                if !first {
                    body.push(',');
                }
                first = false;
                body.push_str(value.get());
            }
        }
        body.push_str("]}]}");
        Ok(body.into_bytes())
    }

    /// The chosen output tensor, split along its first dimension: one result per row (a
    /// scalar when a row holds one value, an array otherwise).
    fn results(&self, answer: &RawValue, expected: usize) -> Result<Vec<Box<RawValue>>, Unusable> {
        let outputs = Pointer::parse("/outputs")
            .ok()
            .and_then(|p| p.find(answer))
            .and_then(json::elements)
            .ok_or_else(|| {
                Unusable::Shape(
                    "the answer has no \"outputs\" array (Open Inference Protocol)".into(),
                )
            })?;
        self.split(&outputs, expected).map_err(Unusable::Content)
    }

    /// The chosen output tensor among `outputs`, split into `expected` results.
    fn split(&self, outputs: &[&RawValue], expected: usize) -> Result<Vec<Box<RawValue>>, String> {
        let name = Pointer::parse("/name").map_err(|e| e.to_string())?;
        let output = match &self.output {
            None => outputs.first().copied(),
            Some(wanted) => outputs.iter().copied().find(|o| {
                name.find(o)
                    .and_then(|n| serde_json::from_str::<String>(n.get()).ok())
                    .is_some_and(|n| &n == wanted)
            }),
        }
        .ok_or_else(|| match &self.output {
            Some(wanted) => format!("the answer has no output named {wanted:?} (--v2-output)"),
            None => "the answer's \"outputs\" is empty".to_string(),
        })?;
        let shape: Vec<usize> = Pointer::parse("/shape")
            .ok()
            .and_then(|p| p.find(output))
            .and_then(|s| serde_json::from_str(s.get()).ok())
            .ok_or("the output tensor has no \"shape\" of whole numbers")?;
        let mut data = Vec::new();
        let found = Pointer::parse("/data").ok().and_then(|p| p.find(output));
        flatten(found.ok_or("the output tensor has no \"data\"")?, &mut data);
        let rows = shape.first().copied().unwrap_or(0);
        if rows != expected {
            return Err(format!(
                "expected {expected} rows in the output tensor (one per record), got shape {shape:?}"
            ));
        }
        let per_row: usize = shape[1..].iter().product();
        if data.len() != rows * per_row {
            return Err(format!(
                "the output tensor has {} values, but its shape {shape:?} needs {}",
                data.len(),
                rows * per_row
            ));
        }
        data.chunks(per_row.max(1))
            .map(|row| {
                let text = match row {
                    [one] if per_row == 1 => one.get().to_owned(),
                    _ => nest(row, &shape[1..]),
                };
                RawValue::from_string(text).map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// The width of the rows (None for scalar rows) and their datatype, given or inferred. Rows
/// must all be numbers, all strings, all booleans, or all arrays of numbers of one length.
fn tensor_of(
    rows: &[&RawValue],
    given: Option<&str>,
) -> Result<(Option<usize>, String), BodyError> {
    let mut width = None;
    let mut kinds = Kinds::default();
    for (i, row) in rows.iter().enumerate() {
        let this = match json::elements(row) {
            Some(values) => {
                for value in &values {
                    kinds.note(value);
                }
                Some(values.len())
            }
            None => {
                kinds.note(row);
                None
            }
        };
        if i == 0 {
            width = this;
        } else if this != width {
            return Err(BodyError {
                row: Some(i),
                message: uneven(this, width),
            });
        }
    }
    let datatype = match given {
        Some(given) => given.to_owned(),
        None => kinds
            .datatype()
            .map_err(|message| BodyError { row: None, message })?
            .to_owned(),
    };
    Ok((width, datatype))
}

/// Why a v2 row of `width` values (None: a single value, not an array) cannot go with rows
/// of `first`.
fn uneven(width: Option<usize>, first: Option<usize>) -> String {
    let count = |n: Option<usize>| match n {
        None => "a single value".to_string(),
        Some(1) => "1 value".to_string(),
        Some(n) => format!("{n} values"),
    };
    format!(
        "the row has {} where the batch's first has {} (--api v2 needs rows of equal length)",
        count(width),
        count(first)
    )
}

#[derive(Default)]
struct Kinds {
    floats: bool,
    integers: bool,
    strings: bool,
    booleans: bool,
    other: bool,
}

impl Kinds {
    fn note(&mut self, value: &RawValue) {
        let text = value.get().trim();
        match text.as_bytes().first() {
            Some(b'"') => self.strings = true,
            Some(b't' | b'f') => self.booleans = true,
            Some(b'-' | b'0'..=b'9') if text.contains(['.', 'e', 'E']) => self.floats = true,
            Some(b'-' | b'0'..=b'9') => self.integers = true,
            _ => self.other = true,
        }
    }

    fn datatype(&self) -> Result<&'static str, String> {
        let numbers = self.floats || self.integers;
        match (numbers, self.strings, self.booleans, self.other) {
            (true, false, false, false) if self.floats => Ok("FP64"),
            (true, false, false, false) => Ok("INT64"),
            (false, true, false, false) => Ok("BYTES"),
            (false, false, true, false) => Ok("BOOL"),
            (false, false, false, false) => Ok("FP64"),
            _ => Err(
                "rows mix kinds of values (numbers, strings, booleans, objects); \
                      --api v2 needs one kind, or --v2-datatype"
                    .into(),
            ),
        }
    }
}

/// Every leaf of a (possibly nested) array, in order.
fn flatten<'a>(value: &'a RawValue, out: &mut Vec<&'a RawValue>) {
    match json::elements(value) {
        Some(values) => values.into_iter().for_each(|v| flatten(v, out)),
        None => out.push(value),
    }
}

/// Flat `values` nested into arrays of these dimensions.
fn nest(values: &[&RawValue], dims: &[usize]) -> String {
    match dims {
        [] | [_] => {
            let inner: Vec<&str> = values.iter().map(|v| v.get()).collect();
            format!("[{}]", inner.join(","))
        }
        [_, rest @ ..] => {
            let step: usize = rest.iter().product::<usize>().max(1);
            let parts: Vec<String> = values.chunks(step).map(|c| nest(c, rest)).collect();
            format!("[{}]", parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    /// What a 200 answer without a request id says beside its body.
    const OK: Meta<'static> = Meta {
        status: 200,
        request_id: None,
    };
    use super::*;
    use crate::testing::record;

    fn batch(texts: &[&str]) -> Vec<Record> {
        (1..)
            .zip(texts)
            .map(|(line, text)| record("t", line, text))
            .collect()
    }

    /// An OpenAI batch request is keyed by where it goes as well as by its body.
    #[test]
    fn a_request_line_is_sent_as_its_path_and_body() {
        let codec = codec(&["--api", "openai-batch"]);
        let line = |url: &str| {
            let text = format!(
                r#"{{"custom_id":"a","method":"POST","url":"{url}","body":{{"input":"x"}}}}"#
            );
            RawValue::from_string(text).unwrap()
        };
        let (chat, embed) = (line("/v1/chat/completions"), line("/v1/embeddings"));
        let sent = |record| codec.sent(record).map(|pieces| pieces.concat());
        assert_eq!(
            sent(&chat).unwrap(),
            br#"/v1/chat/completions {"input":"x"}"#.to_vec()
        );
        assert_ne!(sent(&chat), sent(&embed));
    }

    #[test]
    fn body_passes_records_through_untouched() {
        let b = batch(&[
            "1.0e+300",
            "{\"a\" : -0.0}",
            "12345678901234567890123",
            "\"\\u00e9\"",
        ]);
        assert_eq!(
            String::from_utf8(plain_body(&b)).unwrap(),
            "[1.0e+300,{\"a\" : -0.0},12345678901234567890123,\"\\u00e9\"]"
        );
    }
    /// The codec these flags describe.
    fn codec(flags: &[&str]) -> Codec {
        let args = ["abatch", "-u", "http://host/"].iter().chain(flags);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(args).unwrap();
        crate::config::Config::new(cli).unwrap().codec
    }

    #[test]
    fn every_pointer_is_checked_whatever_the_way_and_input_first() {
        let refused = |flags: &[&str]| {
            let args = ["abatch", "-u", "http://host/"].iter().chain(flags);
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(args).unwrap();
            crate::config::Config::new(cli).err().unwrap().to_string()
        };
        assert!(refused(&["--api", "v2", "--results", "x"]).contains("--results: "));
        let both = refused(&["--input", "x", "--results", "y"]);
        assert!(both.contains("--input: "), "{both}");
    }

    #[test]
    fn the_default_codec_takes_the_plain_path_and_the_flags_leave_it() {
        assert!(matches!(codec(&[]).way, Way::Plain));
        for flags in [
            &["--input", "/text"][..],
            &["--results", "/r"],
            &["--merge", "m"],
            &["--template", r#"{"x": $batch}"#],
            &["--api", "tfserving"],
        ] {
            assert!(matches!(codec(flags).way, Way::Batch { .. }), "{flags:?}");
        }
        assert!(codec(&["--single"]).single());
        assert!(matches!(codec(&["--api", "v2"]).way, Way::Tensor { .. }));
    }

    #[test]
    fn results_must_be_an_array_of_the_right_length() {
        let plain = codec(&[]);
        assert_eq!(plain.results(b"[1, {\"b\": 2}]", 2, OK).unwrap().len(), 2);
        let wrong = plain.results(b"[1]", 2, OK).unwrap_err();
        assert_eq!(wrong, "expected 2 results (one per record), got 1");
        let object = plain.results(b"{\"predictions\": []}", 2, OK).unwrap_err();
        assert_eq!(
            object,
            "expected a JSON array of results, but the answer is an object; its member \
             /predictions is an array of 0: try --results /predictions; body: {\"predictions\": []}"
        );
        let garbage = plain.results(b"<html>oops</html>", 2, OK).unwrap_err();
        assert!(garbage.starts_with("not valid JSON"), "{garbage}");
        assert!(garbage.ends_with("body: <html>oops</html>"), "{garbage}");
    }
    #[test]
    fn a_lone_array_in_an_answer_of_the_wrong_shape_is_suggested() {
        let tfserving = codec(&["--api", "tfserving"]);
        let nested = br#"{"id": "x", "output": {"scores": [1, 2], "model": "m"}}"#;
        assert_eq!(
            tfserving.results(nested, 2, OK).unwrap_err(),
            format!(
                "the answer has no /predictions (--results); its member /output/scores is an \
                 array of 2: try --results /output/scores; body: {}",
                String::from_utf8_lossy(nested)
            )
        );
        let two = codec(&[])
            .results(br#"{"a": [1], "b": [2]}"#, 1, OK)
            .unwrap_err();
        assert!(
            two.starts_with(
                "expected a JSON array of results, but the answer is an object; body: "
            ),
            "{two}"
        );
        let slash = codec(&[]).results(br#"{"a/b": [1]}"#, 1, OK).unwrap_err();
        assert!(slash.contains("try --results /a~1b;"), "{slash}");
        let named = codec(&["--results", "/data"]);
        let scalar = named.results(br#"{"data": "busy"}"#, 1, OK).unwrap_err();
        assert!(
            scalar.starts_with("/data in the answer is a string, not an array (--results); body: "),
            "{scalar}"
        );
        let bare = named.results(b"[1]", 1, OK).unwrap_err();
        assert!(
            bare.contains("; the answer itself is an array of 1: try --results ''; "),
            "{bare}"
        );
        let text = codec(&[]).results(br#""busy""#, 1, OK).unwrap_err();
        assert_eq!(
            text,
            "expected a JSON array of results, but the answer is a string; body: \"busy\""
        );
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn templates_need_their_token_once_and_must_be_json() {
        assert_eq!(
            split_template(r#"{"model": "m", "input": $batch}"#, "$batch").unwrap(),
            (r#"{"model": "m", "input": "#.to_string(), "}".to_string())
        );
        assert!(split_template(r#"{"input": "$batch"}"#, "$batch").is_err());
        assert!(split_template(r#"{"a": $batch, "b": $batch}"#, "$batch").is_err());
        assert!(split_template(r#"{"input": $batch"#, "$batch").is_err());
        assert_eq!(
            with_fields(r#"{"input": $batch}"#, &[("model".into(), "\"m\"".into())]).unwrap(),
            r#"{"model":"m","input": $batch}"#
        );
        assert_eq!(
            with_fields("{}", &[("k".into(), "1".into())]).unwrap(),
            r#"{"k":1}"#
        );
        assert!(with_fields("$batch", &[("k".into(), "1".into())]).is_err());
    }

    #[test]
    fn results_are_placed_by_index() {
        let index = Pointer::parse("/index").unwrap();
        let a = raw(r#"{"index": 1, "v": "b"}"#);
        let b = raw(r#"{"index": 0, "v": "a"}"#);
        let placed = place(vec![&a, &b], &index).unwrap();
        assert_eq!(placed[0].get(), b.get());
        assert!(place(vec![&a, &a], &index).is_err());
        let c = raw(r#"{"index": 5}"#);
        assert!(place(vec![&a, &c], &index).is_err());
    }

    #[test]
    fn v2_rows_become_one_tensor_and_come_back_one_per_row() {
        let v2 = V2 {
            input: "input-0".into(),
            datatype: None,
            output: None,
        };
        let rows = [raw("[5.1, 3.5, 1.4, 0.2]"), raw("[6, 2.9, 4.5, 1.5]")];
        let inputs: Vec<Input> = rows.iter().map(|r| Input::Text(r)).collect();
        let body = String::from_utf8(v2.body("{}", &inputs).unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"inputs":[{"name":"input-0","shape":[2,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2,6,2.9,4.5,1.5]}]}"#
        );
        let answer =
            raw(r#"{"outputs":[{"name":"out","shape":[2],"datatype":"INT64","data":[0,1]}]}"#);
        let results = v2.results(&answer, 2).unwrap();
        assert_eq!((results[0].get(), results[1].get()), ("0", "1"));
        let answer =
            raw(r#"{"outputs":[{"name":"p","shape":[2,2],"data":[[0.1,0.9],[0.8,0.2]]}]}"#);
        let results = v2.results(&answer, 2).unwrap();
        assert_eq!(results[1].get(), "[0.8,0.2]");
        assert!(v2.results(&answer, 3).is_err());
        let uneven = [raw("[1, 2]"), raw("[1]")];
        let inputs: Vec<Input> = uneven.iter().map(|r| Input::Text(r)).collect();
        let uneven = v2.body("{}", &inputs).unwrap_err();
        assert_eq!(uneven.row, Some(1));
        assert!(
            uneven
                .message
                .starts_with("the row has 1 value where the batch's first has 2 values")
        );
        let words = [raw(r#""a""#), raw(r#""b""#)];
        let inputs: Vec<Input> = words.iter().map(|r| Input::Text(r)).collect();
        let body = String::from_utf8(v2.body(r#"{"k":1}"#, &inputs).unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"k":1,"inputs":[{"name":"input-0","shape":[2,1],"datatype":"BYTES","data":["a","b"]}]}"#
        );
    }
}
