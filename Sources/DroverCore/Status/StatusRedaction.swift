/// Query strings can hold secrets (tokens, e-mail addresses): status pages
/// show them only for pools with `status.show_query = yes`.
extension PoolStatus {
    /// The text that replaces a query string.
    public static let redactedQuery = "[redacted]"

    /// This pool with every process's query string (the part of its request
    /// URI after "?") replaced by "[redacted]".
    public func redactingQueries() -> PoolStatus {
        var copy = self
        for index in copy.processes.indices {
            copy.processes[index].requestURI = Self.redactedURI(copy.processes[index].requestURI)
        }
        return copy
    }

    /// A URI without its query string's value; a URI without one is unchanged.
    public static func redactedURI(_ uri: String) -> String {
        guard let mark = uri.firstIndex(of: "?") else { return uri }
        return uri[...mark] + redactedQuery
    }
}
