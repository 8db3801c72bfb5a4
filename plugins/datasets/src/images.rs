//! Synthetic images for `random_vl`, as evalscope draws them: a canvas of one random colour with
//! one to five random rectangles, ellipses or lines in random colours, encoded as PNG and sent
//! as a `data:image/png;base64,...` URL. `--image-format` is the colour mode (PIL's names).

use base64::Engine;
use perf_plugin_api::{ChatMessage, ContentPart, DatasetItem, PluginError, PromptItem};
use rand::rngs::StdRng;
use rand::Rng;

/// A colour mode: how many channels a pixel has and the PNG colour type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `RGB`.
    Rgb,
    /// `RGBA`.
    Rgba,
    /// `L` (grey).
    Grey,
    /// `LA` (grey with alpha).
    GreyAlpha,
}

impl Mode {
    /// The mode `--image-format` names.
    pub fn parse(name: &str) -> Result<Self, PluginError> {
        match name {
            "RGB" => Ok(Mode::Rgb),
            "RGBA" => Ok(Mode::Rgba),
            "L" => Ok(Mode::Grey),
            "LA" => Ok(Mode::GreyAlpha),
            other => Err(PluginError::config(format!(
                "--image-format {other} is not a colour mode random_vl draws: use RGB, RGBA, L or LA"
            ))),
        }
    }

    fn channels(self) -> usize {
        match self {
            Mode::Rgb => 3,
            Mode::Rgba => 4,
            Mode::Grey => 1,
            Mode::GreyAlpha => 2,
        }
    }

    fn png(self) -> png::ColorType {
        match self {
            Mode::Rgb => png::ColorType::Rgb,
            Mode::Rgba => png::ColorType::Rgba,
            Mode::Grey => png::ColorType::Grayscale,
            Mode::GreyAlpha => png::ColorType::GrayscaleAlpha,
        }
    }
}

/// The MIME type of an image file's extension (lower case), for the image types data URLs carry.
pub(crate) fn image_type(ext: &str) -> Option<&'static str> {
    match ext {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        "webp" => Some("image/webp"),
        "gif" => Some("image/gif"),
        _ => None,
    }
}

/// One user message: `text`, then the image's own bytes as a data URL, the order evalscope's
/// image datasets build.
pub(crate) fn image_prompt(text: &str, bytes: &[u8], mime: &str) -> DatasetItem {
    let url = format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    let message = ChatMessage::new(
        "user",
        [
            ContentPart::Text(text.to_string().into()),
            ContentPart::ImageUrl(url.into()),
        ],
    );
    DatasetItem::new(PromptItem::Messages(vec![message].into()))
}

/// What every image of a run looks like.
#[derive(Debug, Clone, Copy)]
pub struct ImageSpec {
    pub width: u32,
    pub height: u32,
    pub mode: Mode,
}

struct Canvas {
    spec: ImageSpec,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(spec: ImageSpec, colour: &[u8]) -> Self {
        let n = spec.width as usize * spec.height as usize;
        Canvas {
            spec,
            pixels: colour
                .iter()
                .copied()
                .cycle()
                .take(n * colour.len())
                .collect(),
        }
    }

    fn set(&mut self, x: i64, y: i64, colour: &[u8]) {
        let (w, h) = (i64::from(self.spec.width), i64::from(self.spec.height));
        if x < 0 || y < 0 || x >= w || y >= h {
            return;
        }
        let c = colour.len();
        let at = (y * w + x) as usize * c;
        self.pixels[at..at + c].copy_from_slice(colour);
    }

    fn rectangle(&mut self, (x0, y0, x1, y1): (i64, i64, i64, i64), colour: &[u8]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, colour);
            }
        }
    }

    fn ellipse(&mut self, (x0, y0, x1, y1): (i64, i64, i64, i64), colour: &[u8]) {
        let (cx, cy) = ((x0 + x1) as f64 / 2.0, (y0 + y1) as f64 / 2.0);
        let (rx, ry) = (
            ((x1 - x0) as f64 / 2.0).max(0.5),
            ((y1 - y0) as f64 / 2.0).max(0.5),
        );
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
                if dx * dx + dy * dy <= 1.0 {
                    self.set(x, y, colour);
                }
            }
        }
    }

    /// A line `width` pixels thick (Bresenham, thickened with squares).
    fn line(&mut self, (x0, y0, x1, y1): (i64, i64, i64, i64), width: i64, colour: &[u8]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let half = width / 2;
        loop {
            self.rectangle((x - half, y - half, x + half, y + half), colour);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn png(&self) -> Result<Vec<u8>, PluginError> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.spec.width, self.spec.height);
        encoder.set_color(self.spec.mode.png());
        encoder.set_depth(png::BitDepth::Eight);
        let encoded = encoder
            .write_header()
            .and_then(|mut w| w.write_image_data(&self.pixels));
        encoded.map_err(|e| PluginError::other(format!("encoding a PNG failed: {e}")))?;
        Ok(out)
    }
}

fn colour(rng: &mut StdRng, mode: Mode) -> Vec<u8> {
    (0..mode.channels()).map(|_| rng.gen()).collect()
}

/// Two corners inside the canvas, ordered.
fn corners(rng: &mut StdRng, spec: ImageSpec) -> (i64, i64, i64, i64) {
    let (w, h) = (i64::from(spec.width), i64::from(spec.height));
    let (a, b) = (rng.gen_range(0..w), rng.gen_range(0..w));
    let (c, d) = (rng.gen_range(0..h), rng.gen_range(0..h));
    (a.min(b), c.min(d), a.max(b), c.max(d))
}

/// One image as a PNG data URL.
pub fn data_url(spec: ImageSpec, rng: &mut StdRng) -> Result<String, PluginError> {
    let background = colour(rng, spec.mode);
    let mut canvas = Canvas::new(spec, &background);
    for _ in 0..rng.gen_range(1..=5) {
        let c = colour(rng, spec.mode);
        match rng.gen_range(0..3) {
            0 => canvas.rectangle(corners(rng, spec), &c),
            1 => canvas.ellipse(corners(rng, spec), &c),
            _ => {
                let (w, h) = (i64::from(spec.width), i64::from(spec.height));
                let ends = (
                    rng.gen_range(0..w),
                    rng.gen_range(0..h),
                    rng.gen_range(0..w),
                    rng.gen_range(0..h),
                );
                let width = rng.gen_range(1..=5);
                canvas.line(ends, width, &c);
            }
        }
    }
    let png = canvas.png()?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn decode(url: &str) -> (png::OutputInfo, Vec<u8>) {
        let b64 = url
            .strip_prefix("data:image/png;base64,")
            .expect("a PNG data URL");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        (info, buf)
    }

    #[test]
    fn images_decode_with_the_requested_size_and_mode_and_vary() {
        let mut rng = StdRng::seed_from_u64(1);
        for (mode, colour) in [
            (Mode::Rgb, png::ColorType::Rgb),
            (Mode::Rgba, png::ColorType::Rgba),
            (Mode::Grey, png::ColorType::Grayscale),
            (Mode::GreyAlpha, png::ColorType::GrayscaleAlpha),
        ] {
            let spec = ImageSpec {
                width: 64,
                height: 48,
                mode,
            };
            let (info, pixels) = decode(&data_url(spec, &mut rng).expect("image"));
            assert_eq!((info.width, info.height, info.color_type), (64, 48, colour));
            let first = &pixels[..mode.channels()];
            assert!(
                pixels.chunks(mode.channels()).any(|p| p != first),
                "shapes drawn over the background"
            );
        }
        let spec = ImageSpec {
            width: 16,
            height: 16,
            mode: Mode::Rgb,
        };
        assert_ne!(
            data_url(spec, &mut rng).expect("a"),
            data_url(spec, &mut rng).expect("b")
        );
        assert!(Mode::parse("CMYK")
            .expect_err("unsupported")
            .message
            .contains("RGB, RGBA, L or LA"));
    }
}
