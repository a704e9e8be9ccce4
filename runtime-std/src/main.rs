fn main() {
    eprintln!("atacama-mail-std: not built yet");
    std::process::exit(2);
}
