# abatch as the per-partition command of a real Spark job: rdd.pipe() in local[2] mode, over 6
# partitions of 4,000 lines with blank lines, an invalid line and records the server refuses.
# Each partition's output must line up with its input, line for line: the answer to a record,
# or null for a blank, invalid or refused line. RDD.zip checks that every partition gave as
# many lines as it was fed; the pairs are then checked one by one.
# Usage: python spark_pipe.py ABATCH URL
import json
import shlex
import sys

from pyspark import SparkConf, SparkContext

abatch, url = sys.argv[1], sys.argv[2]

lines = []
for n in range(4000):
    if n % 97 == 5:
        lines.append("")  # a blank line
    elif n == 1234:
        lines.append("{not json")  # an invalid line
    elif n % 500 == 7:
        lines.append(json.dumps({"id": n, "mock": {"status": 400}}))  # refused by the server
    else:
        lines.append(json.dumps({"id": n}))


def expected(line):
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if "mock" in record:
        return None
    return {"echo": record}


conf = SparkConf().setMaster("local[2]").setAppName("abatch-pipe").set("spark.ui.enabled", "false")
sc = SparkContext(conf=conf)
sc.setLogLevel("ERROR")
try:
    data = sc.parallelize(lines, 6)
    command = [abatch, "-u", url, "--aligned", "--split-on-error", "-b", "16", "-c", "2", "-q",
               "--errors", "/dev/null"]
    proxy = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    # checkCode: a task whose abatch exits non-zero fails, as Spark would retry it.
    answers = data.pipe(shlex.join(command), env=proxy, checkCode=True)
    pairs = data.zip(answers).collect()
    assert len(pairs) == len(lines), (len(pairs), len(lines))
    wrong = [(line, got) for line, got in pairs if json.loads(got) != expected(line)]
    if wrong:
        sys.exit(f"spark: {len(wrong)} lines out of place, the first: {wrong[0]}")
    nulls = sum(1 for _, got in pairs if got == "null")
    print(f"spark: {len(pairs)} lines in {data.getNumPartitions()} partitions, each answer in "
          f"its place ({nulls} null)")
finally:
    sc.stop()
