/// Where Drover looks for things when not told. (Compiled-in defaults; the
/// packaging work makes them settable at install time.)
public enum Locations {
    public static let defaultConfigFile = "/etc/drover/drover.conf"
}
