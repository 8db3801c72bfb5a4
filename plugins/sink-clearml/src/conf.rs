//! `clearml.conf`, the file `clearml-init` writes (HOCON), for what the environment does not
//! say: `api.api_server`, `api.web_server` and `api.credentials.access_key` / `secret_key`,
//! read from `CLEARML_CONFIG_FILE` or `~/clearml.conf` as the official client finds it. Only
//! objects, strings and bare values are read (dotted keys included); arrays are skipped and
//! every other key is ignored.

use std::collections::HashMap;
use std::path::PathBuf;

/// What perf takes from the file.
#[derive(Debug, Default, PartialEq)]
pub struct Conf {
    pub api_server: Option<String>,
    pub web_server: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// `CLEARML_CONFIG_FILE`, else `~/clearml.conf`, when it exists.
pub fn path() -> Option<PathBuf> {
    let path = match perf_sink_common::env("CLEARML_CONFIG_FILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(perf_sink_common::env("HOME")?).join("clearml.conf"),
    };
    path.is_file().then_some(path)
}

#[derive(Debug, PartialEq)]
enum Token {
    Open,
    Close,
    OpenList,
    CloseList,
    Separator,
    End,
    Text(String),
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    // Whether the next text is a key (a bare key may end in `:`; a bare value, a URL, holds
    // colons of its own).
    let mut key_next = true;
    while let Some(c) = chars.next() {
        match c {
            '{' | '}' | '\n' | ',' => {
                out.push(match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    _ => Token::End,
                });
                key_next = true;
            }
            '[' => out.push(Token::OpenList),
            ']' => out.push(Token::CloseList),
            ':' | '=' => out.push(Token::Separator),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                s.push(match e {
                                    'n' => '\n',
                                    't' => '\t',
                                    other => other,
                                });
                            }
                        }
                        other => s.push(other),
                    }
                }
                out.push(Token::Text(s));
                key_next = false;
            }
            c if c.is_whitespace() => {}
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{}[],#\"=".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                match s.split_once(':').filter(|_| key_next) {
                    Some((key, rest)) => {
                        out.push(Token::Text(key.to_string()));
                        out.push(Token::Separator);
                        if !rest.is_empty() {
                            out.push(Token::Text(rest.to_string()));
                        }
                    }
                    None => out.push(Token::Text(s)),
                }
                key_next = false;
            }
        }
    }
    out
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| *c != '\n') {
        chars.next();
    }
}

/// Reads the object that starts at `i` (after its `{`, or the whole file) into `out` under
/// `prefix`; returns where it ended.
fn object(t: &[Token], mut i: usize, prefix: &str, out: &mut HashMap<String, String>) -> usize {
    while i < t.len() {
        match &t[i] {
            Token::End | Token::Separator => i += 1,
            Token::Close => return i + 1,
            Token::Text(key) => {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                i += 1;
                if t.get(i) == Some(&Token::Separator) {
                    i += 1;
                }
                match t.get(i) {
                    Some(Token::Open) => i = object(t, i + 1, &path, out),
                    Some(Token::OpenList) => {
                        let mut depth = 0usize;
                        while i < t.len() {
                            match t[i] {
                                Token::OpenList => depth += 1,
                                Token::CloseList => depth -= 1,
                                _ => {}
                            }
                            i += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                    }
                    Some(Token::Text(v)) => {
                        out.insert(path, v.clone());
                        i += 1;
                    }
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// The keys perf uses from the text of a `clearml.conf`.
pub fn parse(text: &str) -> Conf {
    let t = tokens(text);
    let mut values = HashMap::new();
    object(&t, 0, "", &mut values);
    let get = |k: &str| values.get(k).filter(|v| !v.trim().is_empty()).cloned();
    Conf {
        api_server: get("api.api_server"),
        web_server: get("api.web_server"),
        access_key: get("api.credentials.access_key"),
        secret_key: get("api.credentials.secret_key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_clearml_init_writes_is_read() {
        let text = r#"
# ClearML SDK configuration file
api {
    # Notice: 'host' is the api server (default port 8008), not the web server.
    api_server: http://10.0.0.5:8008
    web_server: "http://10.0.0.5:8080"
    files_server: http://10.0.0.5:8081
    // the key pair
    credentials {"access_key": "AK123", "secret_key"  = "S\"K=456"}
}
sdk {
    aws { s3 { credentials: [ {bucket: "b", key: "k"} ] } }
    development.default_output_uri: ""
}
"#;
        assert_eq!(
            parse(text),
            Conf {
                api_server: Some("http://10.0.0.5:8008".into()),
                web_server: Some("http://10.0.0.5:8080".into()),
                access_key: Some("AK123".into()),
                secret_key: Some("S\"K=456".into()),
            }
        );
        let dotted =
            parse("api.api_server = \"https://api.clear.ml\"\napi.credentials.access_key: x\n");
        assert_eq!(dotted.api_server.as_deref(), Some("https://api.clear.ml"));
        assert_eq!(dotted.access_key.as_deref(), Some("x"));
        assert_eq!(
            parse("api { credentials { access_key: \"\" } }"),
            Conf::default()
        );
        assert_eq!(parse("}}{{[[:=\"unterminated"), Conf::default());
    }
}
