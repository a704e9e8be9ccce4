fn main() {
    eprintln!("atacama-mail: not built yet");
    std::process::exit(2);
}
