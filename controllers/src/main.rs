fn main() {
    println!("signpost: work in progress");
}
