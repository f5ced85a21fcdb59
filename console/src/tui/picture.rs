//! A recording's thumbnail as the TUI holds it: decoded once from the
//! worker's JPEG into RGB pixels, then drawn as half-blocks (`▀`, the top
//! pixel as the foreground colour, the bottom one as the background), which
//! every colour terminal shows. Logic only; drawing is `view::picture`.

/// An RGB picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB, 3 bytes a pixel.
    pub rgb: Vec<u8>,
}

/// The largest picture accepted (the worker sends 320 pixels wide).
const MAX_PIXELS: u64 = 1920 * 1080;

impl Picture {
    /// Decodes a JPEG.
    pub fn from_jpeg(bytes: &[u8]) -> Result<Picture, String> {
        let reader = || {
            let mut r = image::ImageReader::with_format(
                std::io::Cursor::new(bytes),
                image::ImageFormat::Jpeg,
            );
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(MAX_PIXELS * 4);
            r.limits(limits);
            r
        };
        let (w, h) = reader()
            .into_dimensions()
            .map_err(|e| format!("not a picture: {e}"))?;
        if u64::from(w) * u64::from(h) > MAX_PIXELS {
            return Err(format!("picture too large: {w}x{h}"));
        }
        let img = reader()
            .decode()
            .map_err(|e| format!("not a picture: {e}"))?;
        let rgb = img.to_rgb8();
        Ok(Picture {
            width: rgb.width(),
            height: rgb.height(),
            rgb: rgb.into_raw(),
        })
    }

    /// The pixel at (x, y), clamped to the picture.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        if self.width == 0 || self.height == 0 {
            return [0, 0, 0];
        }
        let x = x.min(self.width - 1) as usize;
        let y = y.min(self.height - 1) as usize;
        let i = (y * self.width as usize + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// The size in cells (columns, rows) that fits `cols` x `rows` and keeps
    /// the picture's shape: a cell is about twice as tall as wide and holds
    /// two pixels' rows.
    pub fn fit(&self, cols: u16, rows: u16) -> (u16, u16) {
        if self.width == 0 || self.height == 0 || cols == 0 || rows == 0 {
            return (0, 0);
        }
        let aspect = f64::from(self.width) / f64::from(self.height);
        // Width w cells, height h cells: w / (2h) = aspect.
        let mut w = f64::from(cols);
        let mut h = w / aspect / 2.0;
        if h > f64::from(rows) {
            h = f64::from(rows);
            w = h * 2.0 * aspect;
        }
        ((w.floor() as u16).max(1), (h.floor() as u16).max(1))
    }

    /// The colours (top, bottom) of each cell of a `cols` x `rows` grid,
    /// row by row: nearest-neighbour sampling.
    pub fn cells(&self, cols: u16, rows: u16) -> Vec<Vec<([u8; 3], [u8; 3])>> {
        let (cols, rows) = (u32::from(cols), u32::from(rows));
        (0..rows)
            .map(|r| {
                (0..cols)
                    .map(|c| {
                        let x = (c * 2 + 1) * self.width / (cols * 2);
                        let top = (r * 4 + 1) * self.height / (rows * 4);
                        let bottom = (r * 4 + 3) * self.height / (rows * 4);
                        (self.pixel(x, top), self.pixel(x, bottom))
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Left half red, right half blue; the bottom quarter green.
    pub(crate) fn test_picture() -> Picture {
        let (w, h) = (32u32, 16u32);
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(match (x < w / 2, y >= h * 3 / 4) {
                    (_, true) => &[0, 200, 0],
                    (true, false) => &[200, 0, 0],
                    (false, false) => &[0, 0, 200],
                });
            }
        }
        Picture {
            width: w,
            height: h,
            rgb,
        }
    }

    #[test]
    fn cells_sample_the_picture_where_they_lie() {
        let p = test_picture();
        let cells = p.cells(4, 2);
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0][0], ([200, 0, 0], [200, 0, 0]));
        assert_eq!(cells[0][3], ([0, 0, 200], [0, 0, 200]));
        // The bottom row's lower half is in the green quarter.
        assert_eq!(cells[1][0], ([200, 0, 0], [0, 200, 0]));
    }

    #[test]
    fn the_fit_keeps_the_shape() {
        let p = Picture {
            width: 320,
            height: 180,
            rgb: vec![0; 320 * 180 * 3],
        };
        assert_eq!(p.fit(40, 100), (40, 11));
        assert_eq!(p.fit(200, 9), (32, 9));
    }

    #[test]
    fn a_jpeg_is_decoded_and_garbage_is_refused() {
        let mut jpeg = Vec::new();
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([10, 200, 30]));
        image::DynamicImage::ImageRgb8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let p = Picture::from_jpeg(&jpeg).unwrap();
        assert_eq!((p.width, p.height), (16, 8));
        let [r, g, b] = p.pixel(8, 4);
        assert!(r < 40 && g > 170 && b < 60, "{r} {g} {b}");
        assert!(Picture::from_jpeg(b"not a jpeg").is_err());
    }
}
