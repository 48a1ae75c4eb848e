use tract_onnx::prelude::*;
use tinyconv_trainer::data;

struct Rec(Vec<Vec<i8>>);
impl tinyconv::Observer for Rec {
    fn layer_finished(&mut self, _i: usize, _l: &tinyconv::Layer<'_>, out: &[i8]) { self.0.push(out.to_vec()); }
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap();
    let tcm = std::fs::read(format!("{dir}/mnist-cnn.tcm"))?;
    let model = tinyconv::Model::parse(&tcm)?;
    let mnist = data::load(&data::locate(None)?)?;
    let names = ["pool1.out", "pool2.out", "pool3.out", "fc1.out", "fc2.out"];
    let layer_ix = [0usize, 1, 2, 4, 5];
    let shapes = [(14, 14, 16), (6, 6, 128), (2, 2, 256), (1, 1, 500), (1, 1, 10)];
    let mut plans = vec![];
    for n in names {
        let mut m = tract_onnx::onnx().model_for_path(format!("{dir}/mnist-cnn.int8.onnx"))?
            .with_input_fact(0, InferenceFact::dt_shape(i8::datum_type(), [1, 1, 28, 28]))?;
        m.select_outputs_by_name([n])?;
        plans.push(m.into_optimized()?.into_runnable()?);
    }
    let mut arena = vec![0i8; model.arena_len()];
    let mut shown = 0;
    for i in 0..mnist.test.len() {
        let mut rec = Rec(vec![]);
        model.infer_observed(mnist.test.image(i), &mut arena, &mut rec)?;
        let mut q = vec![0i8; 784];
        tinyconv::quantize_pixels(&model, mnist.test.image(i), &mut q);
        let input: Tensor = tract_ndarray::Array4::from_shape_vec((1, 1, 28, 28), q)?.into();
        for (k, plan) in plans.iter().enumerate() {
            let out = plan.run(tvec!(input.clone().into()))?;
            let t = out[0].to_plain_array_view::<i8>()?;
            let t: Vec<i8> = t.iter().copied().collect();
            let (h, w, c) = shapes[k];
            let ours = &rec.0[layer_ix[k]];
            let mut diffs = vec![];
            for y in 0..h { for x in 0..w { for ch in 0..c {
                let a = ours[(y * w + x) * c + ch];
                let b = t[(ch * h + y) * w + x];
                if a != b { diffs.push((y, x, ch, a, b)); }
            }}}
            if !diffs.is_empty() {
                println!("image {i}: first differing layer {} ({} values): {:?}", names[k], diffs.len(), &diffs[..diffs.len().min(5)]);
                shown += 1;
                if k == 0 { let (y, x, ch, _, _) = diffs[0]; explain(&model, mnist.test.image(i), y, x, ch); }
                break;
            }
        }
        if shown >= 6 { break; }
    }
    Ok(())
}

#[allow(dead_code)]
pub fn explain(model: &tinyconv::Model<'_>, pixels: &[u8], y: usize, x: usize, ch: usize) {
    let layer = model.layers().next().unwrap();
    let conv = layer.as_conv().unwrap();
    let mut q = vec![0i8; 784];
    tinyconv::quantize_pixels(model, pixels, &mut q);
    let m = layer.multiplier(ch);
    let s = m.to_scale();
    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let (cy, cx) = (2 * y + dy, 2 * x + dx);
        let mut acc = layer.bias(ch);
        for ky in 0..3 { for kx in 0..3 {
            let iy = cy as isize + ky as isize - 1; let ix = cx as isize + kx as isize - 1;
            if iy < 0 || ix < 0 || iy >= 28 || ix >= 28 { continue; }
            acc += (q[iy as usize * 28 + ix as usize] as i32 + 128) * conv.filter(ch)[ky * 3 + kx] as i32;
        }}
        let (si, sw, so) = (layer.input_quant.scale, layer.weight_scale(ch), layer.output_quant.scale);
        let cands = [("(si*sw)/so", (si * sw) / so), ("si*(sw/so)", si * (sw / so)), ("sw*(si/so)", sw * (si / so)), ("si*sw*(1/so)", si * sw * (1.0 / so)), ("(sw*si)*(1/so)", (sw*si)*(1.0/so))];
        for (n, c) in cands { print!(" {n}={:.9} ", (acc as f32).abs() * c); }
        println!();
        println!("  acc {acc} S {s:e} ({:#x}) exact {} f32 {} zp {}", s.to_bits(), acc as f64 * s as f64, (acc as f32).abs() * s, layer.output_quant.zero_point);
    }
}
