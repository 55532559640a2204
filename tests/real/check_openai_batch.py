# Checks an OpenAI Batch API output file against its input file, for the deterministic model of
# tests/real/openai_server.py (the reply is the last user message's text, upper-cased).
# Every input custom_id must appear exactly once in the output, with response.status_code 200,
# error null, and body.choices[0].message.content equal to the expected reply.
# Usage: python3 check_openai_batch.py INPUT OUTPUT   (standard library only; exits 1 on a mismatch)
import json
import sys


def expected_reply(messages):
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        return (content or "").upper()
    return ""


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{path}:{number}: not JSON: {e}")


def fail(message):
    print(f"check_openai_batch: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        print("usage: check_openai_batch.py INPUT OUTPUT", file=sys.stderr)
        sys.exit(2)
    input_path, output_path = sys.argv[1:]

    expected = {}
    for number, request in read_jsonl(input_path):
        custom_id = request.get("custom_id")
        if custom_id in expected:
            fail(f"{input_path}:{number}: custom_id {custom_id!r} repeats in the input")
        expected[custom_id] = expected_reply(request["body"]["messages"])

    seen = set()
    for number, result in read_jsonl(output_path):
        where = f"{output_path}:{number}"
        custom_id = result.get("custom_id")
        if custom_id not in expected:
            fail(f"{where}: custom_id {custom_id!r} is not in the input")
        if custom_id in seen:
            fail(f"{where}: custom_id {custom_id!r} appears more than once")
        seen.add(custom_id)
        if result.get("error") is not None:
            fail(f"{where}: {custom_id}: error is {json.dumps(result.get('error'))}, expected null")
        response = result.get("response") or {}
        if response.get("status_code") != 200:
            fail(f"{where}: {custom_id}: status_code is {response.get('status_code')!r}, expected 200")
        try:
            content = response["body"]["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            fail(f"{where}: {custom_id}: no response.body.choices[0].message.content")
        if content != expected[custom_id]:
            fail(f"{where}: {custom_id}: content {content!r}, expected {expected[custom_id]!r}")

    missing = [c for c in expected if c not in seen]
    if missing:
        fail(f"{len(missing)} of {len(expected)} custom_ids missing from the output: {', '.join(map(str, missing[:10]))}")
    print(f"check_openai_batch: {len(seen)} of {len(expected)} requests answered as expected")


if __name__ == "__main__":
    main()
