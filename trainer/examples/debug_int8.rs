use tinyconv_trainer::data;
use tract_onnx::prelude::*;

struct Rec(Vec<Vec<i8>>);
impl tinyconv::Observer for Rec {
    fn layer_finished(&mut self, _i: usize, _l: &tinyconv::Layer<'_>, out: &[i8]) {
        self.0.push(out.to_vec());
    }
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap();
    let tcm = std::fs::read(format!("{dir}/mnist-cnn.tcm"))?;
    let model = tinyconv::Model::parse(&tcm)?;
    let mnist = data::load(&data::locate(None)?)?;
    let names = ["pool1.out", "pool2.out", "pool3.out", "fc1.out", "fc2.out"];
    let layer_ix = [0usize, 1, 2, 4, 5];
    let shapes = [
        (14, 14, 16),
        (6, 6, 128),
        (2, 2, 256),
        (1, 1, 500),
        (1, 1, 10),
    ];
    let mut plans = vec![];
    for n in names {
        let mut m = tract_onnx::onnx()
            .model_for_path(format!("{dir}/mnist-cnn.int8.onnx"))?
            .with_input_fact(
                0,
                InferenceFact::dt_shape(f32::datum_type(), [1, 1, 28, 28]),
            )?;
        m.select_outputs_by_name([n])?;
        plans.push(m.into_optimized()?.into_runnable()?);
    }
    let mut arena = vec![0i8; model.arena_len()];
    let mut shown = 0;
    for i in 0..mnist.test.len() {
        let mut rec = Rec(vec![]);
        model.infer_observed(mnist.test.image(i), &mut arena, &mut rec)?;
        // The int8 ONNX quantizes the float pixels itself (QuantizeLinear).
        let input = tinyconv_trainer::referee::float_pixels(&mnist.test, i..i + 1);
        for (k, plan) in plans.iter().enumerate() {
            let out = plan.run(tvec!(input.clone().into()))?;
            let t = out[0].to_plain_array_view::<i8>()?;
            let t: Vec<i8> = t.iter().copied().collect();
            let (h, w, c) = shapes[k];
            let ours = &rec.0[layer_ix[k]];
            let mut diffs = vec![];
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        let a = ours[(y * w + x) * c + ch];
                        let b = t[(ch * h + y) * w + x];
                        if a != b {
                            diffs.push((y, x, ch, a, b));
                        }
                    }
                }
            }
            if !diffs.is_empty() {
                println!(
                    "image {i}: first differing layer {} ({} values): {:?}",
                    names[k],
                    diffs.len(),
                    &diffs[..diffs.len().min(5)]
                );
                shown += 1;
                let (y, x, ch, _, _) = diffs[0];
                if k == 0 {
                    let mut q = vec![0i8; 784];
                    tinyconv::quantize_pixels(&model, mnist.test.image(i), &mut q);
                    explain_layer(&model, 0, &q, y, x, ch);
                } else if k < 3 {
                    explain_layer(&model, layer_ix[k], &rec.0[layer_ix[k] - 1], y, x, ch);
                }
                break;
            }
        }
        if shown >= 6 {
            break;
        }
    }
    Ok(())
}

pub fn explain_layer(
    model: &tinyconv::Model<'_>,
    li: usize,
    input: &[i8],
    y: usize,
    x: usize,
    ch: usize,
) {
    let layer = model.layers().nth(li).unwrap();
    let conv = layer.as_conv().unwrap();
    let (k, pad, cin, h, w) = (
        conv.kernel,
        conv.pad,
        conv.input.c,
        conv.input.h,
        conv.input.w,
    );
    let zx = conv.input_zero_point as i32;
    let (si, sw, so) = (
        layer.input_quant.scale,
        layer.weight_scale(ch),
        layer.output_quant.scale,
    );
    let windows: &[(usize, usize)] = if conv.pool {
        &[(0, 0), (0, 1), (1, 0), (1, 1)]
    } else {
        &[(0, 0)]
    };
    let stride = if conv.pool { 2 } else { 1 };
    let mut best = i32::MIN;
    for &(dy, dx) in windows {
        let (cy, cx) = (y * stride + dy, x * stride + dx);
        let mut acc = layer.bias(ch);
        for ky in 0..k {
            for kx in 0..k {
                let iy = cy as isize + ky as isize - pad as isize;
                let ix = cx as isize + kx as isize - pad as isize;
                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                    continue;
                }
                for ci in 0..cin {
                    acc += (input[(iy as usize * w + ix as usize) * cin + ci] as i32 - zx)
                        * conv.filter(ch)[(ky * k + kx) * cin + ci] as i32;
                }
            }
        }
        best = best.max(acc);
    }
    let a = (best as f32).abs();
    let cands = [
        ("sw*(si*(1/so))", sw * (si * (1.0 / so))),
        ("(si*sw)/so", (si * sw) / so),
        ("(si*sw)*(1/so)", (si * sw) * (1.0 / so)),
        ("sw*(si/so)", sw * (si / so)),
        ("si*(sw/so)", si * (sw / so)),
    ];
    print!(
        "  layer {li} acc {best} zp {}:",
        layer.output_quant.zero_point
    );
    for (n, c) in cands {
        print!(" {n}={:.7}", a * c);
    }
    println!(
        "  exact(f64 of sw*(si*(1/so)))={:.9}",
        best as f64 * cands[0].1 as f64
    );
}
