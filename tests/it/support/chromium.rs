//! Headless Chromium (Debian's `chromium` package) for screenshot tests, and just
//! enough PNG decoding to tell a rendered page from a blank one.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The browser binary, or a panic that says how to get it: these tests never skip.
pub fn binary() -> PathBuf {
    for candidate in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = Path::new(dir).join(candidate);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "chromium is not installed: the web screenshot tests need Debian's `chromium` \
         package. Run `sudo .ci/install-deps` (it runs \
         `apt-get install -y --no-install-recommends chromium`)."
    );
}

async fn run(args: &[String]) -> std::process::Output {
    let mut command = tokio::process::Command::new(binary());
    command.args(args).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(90), command.output()).await {
        Ok(output) => output.expect("run chromium"),
        Err(_) => panic!("chromium did not finish within 90 s: {args:?}"),
    }
}

fn common_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=420,900",
        // Scrollbars would hide whether content runs off the right edge.
        "--hide-scrollbars",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Takes a 420×900 screenshot of `url` into `out` with a fresh profile under `work`.
pub async fn screenshot(work: &Path, url: &str, out: &Path) {
    let profile = work.join(format!("profile-{}", unique()));
    let mut args = common_args(&profile);
    args.push(format!("--screenshot={}", out.display()));
    args.push(url.to_owned());
    let output = run(&args).await;
    assert!(
        out.is_file(),
        "chromium wrote no screenshot of {url}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The DOM of `url` after Chromium rendered it (`--dump-dom`).
pub async fn dump_dom(work: &Path, url: &str) -> String {
    let profile = work.join(format!("profile-{}", unique()));
    let mut args = common_args(&profile);
    args.push("--dump-dom".to_owned());
    args.push(url.to_owned());
    let output = run(&args).await;
    assert!(
        output.status.success(),
        "chromium --dump-dom {url}: {}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A decoded 8-bit RGB(A) image.
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// RGB triples, row by row.
    pub pixels: Vec<[u8; 3]>,
}

impl Image {
    /// The most common colour (the background) and the share of pixels that differ from it.
    pub fn ink(&self) -> ([u8; 3], f64) {
        let mut counts = std::collections::HashMap::new();
        for p in &self.pixels {
            *counts.entry(*p).or_insert(0usize) += 1;
        }
        let (background, n) = counts.into_iter().max_by_key(|(_, n)| *n).unwrap();
        (background, 1.0 - n as f64 / self.pixels.len() as f64)
    }

    /// How many distinct colours appear.
    pub fn colours(&self) -> usize {
        self.pixels
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    /// Share of rows whose right-most `strip` pixels differ from the same row's pixel
    /// near the left edge: text cut off at the right, i.e. the page is wider than the
    /// window. Full-width rules and backgrounds match on both sides and do not count.
    pub fn rows_cut_at_right(&self, strip: usize) -> f64 {
        let cut = (0..self.height)
            .filter(|&y| {
                let row = &self.pixels[y * self.width..(y + 1) * self.width];
                let left = row[2];
                row[self.width - strip..].iter().any(|p| *p != left)
            })
            .count();
        cut as f64 / self.height as f64
    }

    /// Share of rows in `rows` that hold any pixel other than `background`.
    pub fn rows_with_ink(&self, rows: std::ops::Range<usize>, background: [u8; 3]) -> f64 {
        let total = rows.len();
        let inked = rows
            .filter(|&y| {
                self.pixels[y * self.width..(y + 1) * self.width]
                    .iter()
                    .any(|p| *p != background)
            })
            .count();
        inked as f64 / total as f64
    }
}

/// Decodes a non-interlaced 8-bit RGB or RGBA PNG (what Chromium writes).
pub fn decode_png(bytes: &[u8]) -> Image {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let mut at = 8;
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other} not handled"),
                };
                assert_eq!(data[12], 0, "interlaced PNG not handled");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate IDAT");
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "image data size");
    let mut out = vec![0u8; height * stride];
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                out[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 { out[(y - 1) * stride + x] } else { 0 };
            let c = if y > 0 && x >= channels {
                out[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            out[y * stride + x] = line[x].wrapping_add(predicted);
        }
    }
    let pixels = out
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Image {
        width,
        height,
        pixels,
    }
}

/// Takes a `width`×`height` screenshot of `url` into `out`. Unlike `--dump-dom`,
/// `--screenshot` lays the page out at the window's width.
pub async fn screenshot_at(work: &Path, url: &str, out: &Path, width: u32, height: u32) {
    let profile = work.join(format!("profile-{}", unique()));
    let mut args: Vec<String> = common_args(&profile)
        .into_iter()
        .filter(|a| !a.starts_with("--window-size="))
        .collect();
    args.push(format!("--window-size={width},{height}"));
    args.push(format!("--screenshot={}", out.display()));
    args.push(url.to_owned());
    let output = run(&args).await;
    assert!(
        out.is_file(),
        "chromium wrote no screenshot of {url}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `scrollWidth` of `html` laid out `width` px wide: the document is loaded into an
/// `<iframe width=… srcdoc=…>` (the window size does not reach `--dump-dom`'s layout) and
/// a script writes the frame's width into the dumped DOM.
pub async fn scroll_width(work: &Path, html: &str, width: u32) -> u32 {
    let escaped = html
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let page = format!(
        "<!DOCTYPE html><html><body style=\"margin:0\">\
         <iframe id=\"f\" width=\"{width}\" height=\"900\" style=\"border:0\" srcdoc=\"{escaped}\"></iframe>\
         <script>window.addEventListener('load', function () {{\
         var d = document.getElementById('f').contentDocument.documentElement;\
         document.body.setAttribute('data-scroll-width', d.scrollWidth); }});</script>\
         </body></html>"
    );
    let path = work.join(format!("frame-{width}-{}.html", unique()));
    std::fs::write(&path, page).expect("write the frame page");
    let dom = dump_dom(work, &format!("file://{}", path.display())).await;
    let value = dom
        .split("data-scroll-width=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no data-scroll-width in the dumped DOM:\n{dom}"));
    value.parse().expect("a width in pixels")
}
