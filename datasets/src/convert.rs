//! Converting an image to a network's input shape: channels first or last (whichever
//! resamples fewer of them), then a Triangle (bilinear, area-averaging when shrinking) resize.
//!
//! Gray to RGB replicates the gray value. RGB to gray is the `image` crate's `to_luma8`:
//! `0.2126 R + 0.7152 G + 0.0722 B` (the Rec. 709 / sRGB weights, not Rec. 601's
//! 0.299 / 0.587 / 0.114), computed in f32 and rounded to nearest, so a user's image converted
//! by anything else built on `image` gets the same gray. Alpha is dropped.

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};

/// `img` as `height x width x channels` pixels, HWC row-major; `channels` is 1 or 3.
pub fn convert_image(
    img: &DynamicImage,
    (height, width, channels): (usize, usize, usize),
) -> Vec<u8> {
    assert!(
        matches!(channels, 1 | 3),
        "channels must be 1 or 3, not {channels}"
    );
    // To gray before resizing (one channel to resample instead of three); to RGB after.
    let native = if channels == 1 || !img.color().has_color() {
        DynamicImage::ImageLuma8(img.to_luma8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    };
    let (w, h) = (width as u32, height as u32);
    let resized = if (native.width(), native.height()) == (w, h) {
        native
    } else {
        native.resize_exact(w, h, FilterType::Triangle)
    };
    match channels {
        1 => resized.into_luma8().into_raw(),
        _ => resized.into_rgb8().into_raw(),
    }
}

/// The `height x width x channels` image `pixels` (HWC) converted to `target`, see
/// [`convert_image`].
pub fn convert_pixels(
    pixels: &[u8],
    (height, width, channels): (usize, usize, usize),
    target: (usize, usize, usize),
) -> Vec<u8> {
    if (height, width, channels) == target {
        return pixels.to_vec();
    }
    let (w, h, v) = (width as u32, height as u32, pixels.to_vec());
    let img = match channels {
        1 => {
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, v).expect("pixels match the shape"))
        }
        3 => DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, v).expect("pixels match the shape")),
        c => panic!("channels must be 1 or 3, not {c}"),
    };
    convert_image(&img, target)
}
