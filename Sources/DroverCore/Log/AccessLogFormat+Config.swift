import DroverConfig

extension Configuration {
    /// php-fpm refuses to start with a bad `access.format`; so does Drover,
    /// with `file:line: access.format: what is wrong`. (The format is parsed
    /// here because the parser lives with the formatter, in DroverCore.)
    public var accessFormatProblems: [String] {
        pools.compactMap { pool in
            guard pool.accessLog != nil else { return nil }
            do {
                _ = try AccessLogFormat(pool.accessFormat)
                return nil
            } catch {
                let place = pool.locations["access.format"].map { "\($0): " } ?? ""
                return "\(place)access.format: [pool \(pool.name)] wrong format for access.format: \(error)"
            }
        }
    }
}
