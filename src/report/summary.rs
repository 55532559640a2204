//! The closing line: where every record read went (answered, or in the dead-letter sink), and
//! how the run went, as a view of the run's [`Metrics`].

use std::fmt;
use std::time::Duration;

use crate::cli::Shard;
use crate::report::Metrics;

/// The closing line, e.g. "1000 records read: 968 written, 32 failed (dead letters in
/// failed.jsonl);
/// 32 batches, 3 retries, 1.2s, 833 records/s".
pub struct Summary<'a> {
    /// The share of the input the run took (--shard).
    pub shard: Option<Shard>,
    pub metrics: &'a Metrics,
    pub elapsed: Duration,
    /// Where the dead letters went, for the reader to find them: "in FILE" or "on stderr".
    pub errors: &'a str,
    /// Results that could not be written because the reader of the output went away.
    pub reader_gone: bool,
    /// Where --resume found earlier results.
    pub resumed_from: Option<&'a str>,
    /// Nothing was sent (--dry-run).
    pub dry_run: bool,
}

/// "1 batch", "2 batches".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.metrics;
        if let Some(shard) = self.shard {
            write!(f, "shard {}/{}: ", shard.index, shard.count)?;
        }
        if let (Some(output), skipped @ 1..) = (self.resumed_from, t.skipped.get()) {
            write!(
                f,
                "{} skipped (already in {output}); ",
                count(skipped, "record", "records")
            )?;
        }
        if self.dry_run {
            write!(
                f,
                "dry run: {} read into {}",
                count(t.read.get(), "record", "records"),
                count(t.batches.get(), "batch", "batches")
            )?;
            if let Some(cache) = &t.cache {
                write!(f, ", {} from the cache", cache.hits.get())?;
            }
            return f.write_str("; nothing sent");
        }
        write!(
            f,
            "{} read: {} written, {} failed",
            count(t.read.get(), "record", "records"),
            t.written.get(),
            t.failed.get()
        )?;
        if t.unsent.get() > 0 {
            write!(f, ", {} unanswered", t.unsent.get())?;
        }
        if t.blank.get() > 0 {
            write!(
                f,
                ", {} written as null",
                count(t.blank.get(), "blank line", "blank lines")
            )?;
        }
        if t.dead() > 0 {
            write!(f, " (dead letters {})", self.errors)?;
        }
        if self.reader_gone {
            f.write_str(", the rest not written (the output was closed)")?;
        }
        f.write_str("; ")?;
        if let Some(cache) = &t.cache {
            write!(f, "{} from the cache, ", cache.hits.get())?;
        }
        let seconds = self.elapsed.as_secs_f64();
        write!(
            f,
            "{}, {}, {}, {:.0} records/s",
            count(t.batches.get(), "batch", "batches"),
            count(t.retries.get(), "retry", "retries"),
            Elapsed(self.elapsed),
            t.read.get() as f64 / seconds.max(1e-3)
        )?;
        if let Some(tokens) = t.tokens.get() {
            write!(
                f,
                ", {} (as the server counted)",
                count(tokens.total, "token", "tokens")
            )?;
        }
        Ok(())
    }
}

/// "0.4s", "12.3s", "2m05s", "1h02m".
struct Elapsed(Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            0..60 => write!(f, "{:.1}s", self.0.as_secs_f64()),
            60..3600 => write!(f, "{}m{:02}s", secs / 60, secs % 60),
            _ => write!(f, "{}h{:02}m", secs / 3600, secs % 3600 / 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_where_every_record_went() {
        let metrics = Metrics::default();
        for (counter, n) in [
            (&metrics.read, 1000),
            (&metrics.written, 960),
            (&metrics.failed, 32),
            (&metrics.unsent, 8),
            (&metrics.batches, 32),
            (&metrics.retries, 1),
        ] {
            counter.set(n);
        }
        let summary = Summary {
            shard: None,
            metrics: &metrics,
            elapsed: Duration::from_millis(2500),
            errors: "in failed.jsonl",
            reader_gone: false,
            resumed_from: None,
            dry_run: false,
        };
        assert_eq!(
            summary.to_string(),
            "1000 records read: 960 written, 32 failed, 8 unanswered (dead letters in failed.jsonl); \
             32 batches, 1 retry, 2.5s, 400 records/s"
        );
    }

    #[test]
    fn says_how_many_the_cache_answered() {
        let metrics = Metrics {
            cache: Some(Default::default()),
            ..Metrics::default()
        };
        metrics.read.set(100);
        metrics.written.set(100);
        metrics.batches.set(1);
        if let Some(cache) = &metrics.cache {
            cache.hits.set(97);
        }
        let mut summary = Summary {
            shard: None,
            metrics: &metrics,
            elapsed: Duration::from_millis(500),
            errors: "on stderr",
            reader_gone: false,
            resumed_from: None,
            dry_run: false,
        };
        assert_eq!(
            summary.to_string(),
            "100 records read: 100 written, 0 failed; 97 from the cache, 1 batch, 0 retries, \
             0.5s, 200 records/s"
        );
        summary.dry_run = true;
        assert_eq!(
            summary.to_string(),
            "dry run: 100 records read into 1 batch, 97 from the cache; nothing sent"
        );
    }

    #[test]
    fn elapsed_reads_easily() {
        assert_eq!(Elapsed(Duration::from_millis(430)).to_string(), "0.4s");
        assert_eq!(Elapsed(Duration::from_secs(125)).to_string(), "2m05s");
        assert_eq!(Elapsed(Duration::from_secs(3720)).to_string(), "1h02m");
    }
}
