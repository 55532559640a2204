//! The inference APIs the mock speaks, chosen by path as real servers do: where each finds its
//! inputs in a request, and how it answers.

use serde_json::value::RawValue;

/// The request shapes the mock speaks, chosen by path as the real servers do. Each answers
/// with `{"echo": <input>}` (or the input itself where the API wants a string), placed where
/// that API puts its results; the OpenAI shapes list their results in reverse order, as
/// servers may, with an `index` on each.
///
/// The OpenAI shapes also count tokens as `"usage"`, and Ollama as `"prompt_eval_count"`, by a
/// rule a test can repeat: the prompt is a token per 4 bytes of the request body, rounded up
/// (`body.len().div_ceil(4)`), and each choice a completion or chat answers is one token.
/// Embeddings have no completion tokens, so their usage is only `prompt_tokens` and
/// `total_tokens`, as OpenAI's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// A bare array of records, answered by a bare array of results.
    Plain,
    /// `/v1/models/NAME:predict`: `{"instances"}` → `{"predictions"}`.
    Tfserving,
    /// `/v2/models/NAME/infer`: an input tensor → an output tensor holding the same data.
    V2,
    /// `/v1/embeddings`: `{"input"}` → `{"data": [{"index", "embedding"}]}`.
    Embeddings,
    /// `/v1/completions`: `{"prompt"}` → `{"choices": [{"index", "text"}]}`.
    Completions,
    /// `/v1/chat/completions`: `{"messages"}` → `{"choices": [{"message": {"content"}}]}`.
    Chat,
    /// `/embed` (text-embeddings-inference): `{"inputs"}` → a bare array.
    Tei,
    /// `/api/embed` (Ollama): `{"input"}` → `{"embeddings"}`.
    Ollama,
}

impl Api {
    pub(crate) fn of(path: &str) -> Api {
        match path {
            _ if path.ends_with(":predict") => Api::Tfserving,
            _ if path.ends_with("/infer") => Api::V2,
            "/v1/embeddings" => Api::Embeddings,
            "/v1/completions" => Api::Completions,
            "/v1/chat/completions" => Api::Chat,
            "/embed" => Api::Tei,
            "/api/embed" => Api::Ollama,
            _ => Api::Plain,
        }
    }

    pub(crate) fn expects(self) -> &'static str {
        match self {
            Api::Plain => "a JSON array of records",
            Api::Tfserving => "{\"instances\": [...]}",
            Api::V2 => "{\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]}",
            Api::Embeddings | Api::Ollama => "{\"input\": [...]}",
            Api::Completions => "{\"prompt\": [...]}",
            Api::Chat => "{\"messages\": [...]}",
            Api::Tei => "{\"inputs\": [...]}",
        }
    }

    /// The inputs a request carries: records, rows of a tensor, or the one chat.
    pub(crate) fn inputs(self, body: &[u8]) -> Option<Vec<&RawValue>> {
        let member = |name: &str| member_of(serde_json::from_slice(body).ok()?, name);
        match self {
            Api::Plain => serde_json::from_slice(body).ok(),
            Api::Tfserving => array(member("instances")?),
            Api::Embeddings | Api::Ollama => array(member("input")?),
            Api::Completions => array(member("prompt")?),
            Api::Tei => array(member("inputs")?),
            Api::Chat => Some(vec![member("messages")?]),
            Api::V2 => {
                let tensor = first_tensor(body)?;
                let shape: Vec<usize> =
                    serde_json::from_str(member_of(tensor, "shape")?.get()).ok()?;
                let rows = *shape.first()?;
                let data = array(member_of(tensor, "data")?)?;
                let width = data.len().checked_div(rows).unwrap_or(0);
                // One input per row; its values are checked by the answer, not kept here.
                Some(
                    data.chunks(width.max(1))
                        .map(|row| row[0])
                        .take(rows)
                        .collect(),
                )
            }
        }
    }

    pub(crate) fn answer(self, inputs: &[&RawValue], body: &[u8]) -> String {
        let prompt = body.len().div_ceil(4);
        let usage = |completion: Option<usize>| match completion {
            Some(completion) => format!(
                "\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\"total_tokens\":{}}}",
                prompt + completion
            ),
            None => format!("\"usage\":{{\"prompt_tokens\":{prompt},\"total_tokens\":{prompt}}}"),
        };
        let echo = |input: &RawValue| format!("{{\"echo\":{}}}", input.get());
        let join = |items: Vec<String>| items.join(",");
        let reversed = |make: &dyn Fn(usize, &RawValue) -> String| {
            join(
                inputs
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, x)| make(i, x))
                    .collect(),
            )
        };
        match self {
            Api::Plain => results(inputs, false),
            Api::Tfserving => format!(
                "{{\"predictions\":[{}]}}",
                join(inputs.iter().map(|x| echo(x)).collect())
            ),
            Api::Embeddings => format!(
                "{{\"object\":\"list\",\"data\":[{}],{}}}",
                reversed(&|i, x| format!(
                    "{{\"object\":\"embedding\",\"index\":{i},\"embedding\":{}}}",
                    echo(x)
                )),
                usage(None)
            ),
            Api::Completions => format!(
                "{{\"choices\":[{}],{}}}",
                reversed(&|i, x| format!("{{\"index\":{i},\"text\":{}}}", x.get())),
                usage(Some(inputs.len()))
            ),
            Api::Chat => {
                // No choice at all when --wrong-count took the one chat away.
                let choices: Vec<String> = inputs
                    .iter()
                    .take(1)
                    .map(|x| {
                        format!(
                            "{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{}}}}}",
                            echo(x)
                        )
                    })
                    .collect();
                let answered = choices.len();
                format!(
                    "{{\"choices\":[{}],{}}}",
                    join(choices),
                    usage(Some(answered))
                )
            }
            Api::Tei => format!("[{}]", join(inputs.iter().map(|x| echo(x)).collect())),
            Api::Ollama => format!(
                "{{\"embeddings\":[{}],\"prompt_eval_count\":{prompt}}}",
                join(inputs.iter().map(|x| echo(x)).collect())
            ),
            Api::V2 => {
                // The output tensor repeats the input tensor: shape, datatype and data.
                let tensor = first_tensor(body);
                let field = |name| {
                    tensor
                        .and_then(|t| member_of(t, name))
                        .map_or("null", |v| v.get())
                };
                format!(
                    "{{\"model_name\":\"mock\",\"outputs\":[{{\"name\":\"output-0\",\"shape\":{},\"datatype\":{},\"data\":{}}}]}}",
                    field("shape"),
                    field("datatype"),
                    field("data")
                )
            }
        }
    }
}

/// The elements of a JSON array, as text.
fn array(value: &RawValue) -> Option<Vec<&RawValue>> {
    serde_json::from_str(value.get()).ok()
}

/// The first tensor of an Open Inference Protocol request's "inputs".
fn first_tensor(body: &[u8]) -> Option<&RawValue> {
    let inputs = member_of(serde_json::from_slice(body).ok()?, "inputs")?;
    array(inputs)?.first().copied()
}

/// A member of a JSON object, as text.
fn member_of<'a>(object: &'a RawValue, name: &str) -> Option<&'a RawValue> {
    let object: std::collections::HashMap<String, &'a RawValue> =
        serde_json::from_str(object.get()).ok()?;
    object.get(name).copied()
}

/// One `{"echo": <record>}` per record, each record's text kept as it came.
pub(crate) fn results(records: &[&RawValue], pretty: bool) -> String {
    let mut out =
        String::with_capacity(records.iter().map(|r| r.get().len() + 12).sum::<usize>() + 2);
    out.push('[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if pretty {
            out.push_str("\n  {\n    \"echo\": ");
            out.push_str(record.get());
            out.push_str("\n  }");
        } else {
            out.push_str("{\"echo\":");
            out.push_str(record.get());
            out.push('}');
        }
    }
    out.push_str("]\n");
    out
}
