//! Evaluation data: FlagEmbedding's JSONL (`{"query", "pos": [...], "neg": [...]}` per line) or
//! a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::eval::metrics::Qrels;

/// Queries, a corpus and the relevance grades that tie them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// `(query id, text)` of every query to evaluate.
    pub queries: Vec<(String, String)>,
    /// `(document id, text)` of every document.
    pub corpus: Vec<(String, String)>,
    /// Relevance grades (≥ 1 relevant, 0 judged not relevant).
    pub qrels: Qrels,
}

/// One line of FlagEmbedding's JSONL: a query, its positive and negative passages.
#[derive(Debug, Clone, Deserialize)]
pub struct FlagLine {
    /// The query.
    pub query: String,
    /// Relevant passages.
    #[serde(default)]
    pub pos: Vec<String>,
    /// Non-relevant passages.
    #[serde(default)]
    pub neg: Vec<String>,
}

#[derive(Deserialize)]
struct BeirDoc {
    #[serde(rename = "_id")]
    id: IdValue,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
}

/// BEIR ids are strings in most sets and numbers in a few.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(serde_json::Number),
}

impl IdValue {
    fn into_string(self) -> String {
        match self {
            IdValue::Text(s) => s,
            IdValue::Number(n) => n.to_string(),
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))
}

/// The non-empty lines of a JSONL file, parsed; an error names the file and line.
fn jsonl<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    read(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                Error::Input(format!(
                    "{} line {}: not {what}: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

impl Dataset {
    /// A BEIR folder (`split` = the qrels file's name, usually `test`) or a FlagEmbedding JSONL
    /// file.
    pub fn load(path: &Path, split: &str) -> Result<Self> {
        if path.is_dir() {
            Self::from_beir(path, split)
        } else {
            Self::from_flag_jsonl(path)
        }
    }

    /// FlagEmbedding's JSONL: query ids are line numbers from 0 (blank lines skipped), the
    /// corpus is every `pos` and `neg` text once (document ids = positions from 0, in order of
    /// first appearance); `pos` texts have grade 1, `neg` texts 0.
    pub fn from_flag_jsonl(path: &Path) -> Result<Self> {
        let lines: Vec<FlagLine> = jsonl(path, "{\"query\", \"pos\": [...], \"neg\": [...]}")?;
        if lines.is_empty() {
            return Err(Error::Input(format!("{} has no queries", path.display())));
        }
        let mut data = Dataset::default();
        let mut ids: HashMap<String, String> = HashMap::new();
        for (q, line) in lines.into_iter().enumerate() {
            let qid = q.to_string();
            let mut grades = BTreeMap::new();
            for (texts, grade) in [(line.neg, 0), (line.pos, 1)] {
                for text in texts {
                    let id = ids.entry(text.clone()).or_insert_with(|| {
                        let id = data.corpus.len().to_string();
                        data.corpus.push((id.clone(), text));
                        id
                    });
                    grades.insert(id.clone(), grade);
                }
            }
            if !grades.values().any(|&g| g >= 1) {
                return Err(Error::Input(format!(
                    "{} query {q} has no positive passage (\"pos\")",
                    path.display()
                )));
            }
            data.qrels.insert(qid.clone(), grades);
            data.queries.push((qid, line.query));
        }
        Ok(data)
    }

    /// A BEIR folder: documents are `title + " " + text` (just `text` without a title); only
    /// queries with a line in `qrels/<split>.tsv` are kept.
    pub fn from_beir(dir: &Path, split: &str) -> Result<Self> {
        let qrels = beir_qrels(&dir.join("qrels").join(format!("{split}.tsv")))?;
        let corpus: Vec<BeirDoc> = jsonl(&dir.join("corpus.jsonl"), "a BEIR document")?;
        let corpus: Vec<(String, String)> = corpus
            .into_iter()
            .map(|d| {
                let text = if d.title.is_empty() {
                    d.text
                } else {
                    format!("{} {}", d.title, d.text)
                };
                (d.id.into_string(), text)
            })
            .collect();
        let queries: Vec<BeirDoc> = jsonl(&dir.join("queries.jsonl"), "a BEIR query")?;
        let queries: Vec<(String, String)> = queries
            .into_iter()
            .map(|q| (q.id.into_string(), q.text))
            .filter(|(id, _)| qrels.contains_key(id))
            .collect();
        if queries.is_empty() {
            return Err(Error::Input(format!(
                "{}: no query of queries.jsonl has qrels in qrels/{split}.tsv",
                dir.display()
            )));
        }
        let qrels = qrels
            .into_iter()
            .filter(|(id, _)| queries.iter().any(|(q, _)| q == id))
            .collect();
        Ok(Dataset {
            queries,
            corpus,
            qrels,
        })
    }
}

/// `query-id <tab> corpus-id <tab> score` lines, after an optional header.
fn beir_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for (i, line) in read(path)?.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() || (i == 0 && fields.first() == Some(&"query-id")) {
            continue;
        }
        let bad = || {
            Error::Input(format!(
                "{} line {}: expected query-id, corpus-id, score",
                path.display(),
                i + 1
            ))
        };
        let [qid, docid, grade] = fields.as_slice() else {
            return Err(bad());
        };
        let grade: i64 = grade.parse().map_err(|_| bad())?;
        qrels
            .entry(qid.to_string())
            .or_default()
            .insert(docid.to_string(), grade);
    }
    Ok(qrels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_jsonl_deduplicates_the_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            "{\"query\":\"q0\",\"pos\":[\"a\"],\"neg\":[\"b\",\"c\"]}\n\n{\"query\":\"q1\",\"pos\":[\"c\"],\"neg\":[\"a\"]}\n",
        )
        .unwrap();
        let d = Dataset::load(&path, "test").unwrap();
        let texts: Vec<&str> = d.corpus.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, vec!["b", "c", "a"]);
        assert_eq!(d.queries[1], ("1".to_string(), "q1".to_string()));
        assert_eq!(d.qrels["0"]["2"], 1);
        assert_eq!(d.qrels["0"]["0"], 0);
        assert_eq!(d.qrels["1"]["1"], 1);
        std::fs::write(&path, "{\"query\":\"q\",\"neg\":[\"b\"]}\n").unwrap();
        assert!(Dataset::load(&path, "test").is_err());
        std::fs::write(&path, "{\"query\":\"q\"\n").unwrap();
        let err = Dataset::load(&path, "test").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn beir_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("qrels")).unwrap();
        std::fs::write(
            d.join("corpus.jsonl"),
            "{\"_id\":\"d1\",\"title\":\"T\",\"text\":\"x\"}\n{\"_id\":2,\"text\":\"y\"}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("queries.jsonl"),
            "{\"_id\":\"q1\",\"text\":\"what\"}\n{\"_id\":\"q2\",\"text\":\"unjudged\"}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\nq1\t2\t2\n",
        )
        .unwrap();
        let data = Dataset::load(d, "test").unwrap();
        assert_eq!(data.corpus[0], ("d1".to_string(), "T x".to_string()));
        assert_eq!(data.corpus[1].0, "2");
        assert_eq!(data.queries, vec![("q1".to_string(), "what".to_string())]);
        assert_eq!(data.qrels["q1"]["2"], 2);
        assert!(Dataset::load(d, "dev").is_err());
    }
}
