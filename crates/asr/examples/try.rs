fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut m = asr::Model::load(std::path::Path::new(&a[1])).unwrap();
    for f in &a[2..] {
        let pcm: Vec<i16> = hound::WavReader::open(f)
            .unwrap()
            .into_samples::<i16>()
            .map(Result::unwrap)
            .collect();
        let t = std::time::Instant::now();
        let r = asr::single_threaded(|| m.transcribe(&pcm).unwrap());
        println!("{f}: {:?} {:?}", r.text, t.elapsed());
    }
}
