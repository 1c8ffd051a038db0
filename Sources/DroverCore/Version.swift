/// Drover's version, shown by `drover -v` and in the error log.
public enum DroverVersion {
    public static let string = "0.1.0"
}
