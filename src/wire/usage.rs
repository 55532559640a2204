//! The tokens a server says it counted for a request, where it says so: OpenAI-style
//! `"usage": {"prompt_tokens", "completion_tokens", "total_tokens"}`, and Ollama's
//! `prompt_eval_count` / `eval_count`, as members of the answer's top-level object.

use serde::Deserialize;

/// Tokens counted by the server for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
}

#[derive(Deserialize)]
struct Answer {
    usage: Option<OpenAi>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct OpenAi {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

/// What `body` reports of the tokens counted, if it reports any. Answers that cannot say
/// (no such member in their text) cost one search.
pub fn usage(body: &[u8]) -> Option<Usage> {
    let mentions = |word: &[u8]| memchr::memmem::find(body, word).is_some();
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object || (!mentions(b"\"usage\"") && !mentions(b"eval_count\"")) {
        return None;
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    if let Some(usage) = answer.usage {
        let prompt = usage.prompt_tokens.unwrap_or(0);
        let completion = usage.completion_tokens.unwrap_or(0);
        let total = usage
            .total_tokens
            .unwrap_or_else(|| prompt.saturating_add(completion));
        return Some(Usage {
            prompt,
            completion,
            total,
        });
    }
    if answer.prompt_eval_count.is_none() && answer.eval_count.is_none() {
        return None;
    }
    let prompt = answer.prompt_eval_count.unwrap_or(0);
    let completion = answer.eval_count.unwrap_or(0);
    Some(Usage {
        prompt,
        completion,
        total: prompt.saturating_add(completion),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_ollama_counts() {
        let openai =
            br#"{"data":[],"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}"#;
        assert_eq!(
            usage(openai),
            Some(Usage {
                prompt: 8,
                completion: 2,
                total: 10
            })
        );
        let embeddings = br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            usage(embeddings).map(|u| (u.completion, u.total)),
            Some((0, 8))
        );
        let ollama = br#"{"embeddings":[[1]],"prompt_eval_count":5}"#;
        assert_eq!(usage(ollama).map(|u| u.total), Some(5));
    }

    #[test]
    fn answers_without_counts_or_with_odd_ones_say_nothing() {
        assert_eq!(usage(br#"[{"echo":{"usage":1}}]"#), None);
        assert_eq!(usage(br#"{"predictions":[1]}"#), None);
        assert_eq!(usage(br#"{"usage":"lots"}"#), None);
        assert_eq!(usage(br#"{"usage":{"prompt_tokens":-1}}"#), None);
        assert_eq!(usage(b"not json \"usage\""), None);
        assert_eq!(usage(br#"[1, 2, {"usage": 3}]"#), None);
        let huge = format!(
            r#"{{"usage":{{"prompt_tokens":{0},"completion_tokens":{0}}}}}"#,
            u64::MAX
        );
        assert_eq!(usage(huge.as_bytes()).map(|u| u.total), Some(u64::MAX));
    }
}
