// The public entry point: read, apply the directive table, validate.

public enum ConfigLoader {
    /// Parses `path` (php-fpm's main config: [global] + pools + include=), applies `prefix`
    /// (php-fpm's -p: relative paths in the config are relative to it; also the default for `$prefix`),
    /// substitutes ${ENV} from `environment` and $pool, validates, and returns the typed model.
    /// Throws ConfigErrors (all errors found, plus warnings) when anything is wrong.
    ///
    /// Without `prefix`, relative paths are relative to the directory of the
    /// main file. `environment` nil means the process environment.
    public static func load(path: String, prefix: String? = nil, environment: [String: String]? = nil) throws -> Configuration {
        let sink = DiagnosticSink()
        let env = environment.map(Environment.init) ?? Environment.process()
        let globalPrefix = prefix.map(Paths.absolute) ?? Paths.directory(of: Paths.absolute(path))
        if prefix != nil, !Paths.isDirectory(globalPrefix) {
            sink.error(nil, nil, "the prefix '\(globalPrefix)' does not exist or is not a directory")
            throw ConfigErrors(errors: sink.errors, warnings: sink.warnings)
        }
        var reader = IniReader(prefix: globalPrefix, environment: env, sink: sink)
        reader.read(file: path)
        if reader.files.isEmpty {
            throw ConfigErrors(errors: sink.errors, warnings: sink.warnings)
        }
        var builder = ConfigBuilder(sink: sink, environment: env, prefix: globalPrefix)
        for event in reader.events { builder.handle(event) }
        var config = builder.finish(files: reader.files)
        if !sink.errors.isEmpty {
            throw ConfigErrors(errors: sink.errors, warnings: sink.warnings)
        }
        config.warnings = sink.warnings
        return config
    }
}

/// Applies entries to the global and pool states in file order.
struct ConfigBuilder {
    let sink: DiagnosticSink
    let environment: Environment
    let prefix: String
    var global = GlobalState()
    var pools: [PoolState] = []
    /// Index into `pools` of the current section; nil in [global] (and before any section).
    var current: Int?
    var sections = 0

    init(sink: DiagnosticSink, environment: Environment, prefix: String) {
        self.sink = sink
        self.environment = environment
        self.prefix = prefix
    }

    mutating func handle(_ event: IniEvent) {
        switch event {
        case .section(let name, let location):
            sections += 1
            if name.lowercased() == "global" {
                current = nil
                if global.config.location == nil { global.config.location = location }
                return
            }
            // php-fpm: a section named like an existing pool (case-insensitively) reopens it.
            if let index = pools.firstIndex(where: { $0.config.name.lowercased() == name.lowercased() }) {
                sink.warning(location, nil, "pool [\(pools[index].config.name)] reopened (first defined at \(pools[index].config.location)); "
                             + "its directives here override the earlier ones")
                pools[index].block = sections
                current = index
            } else {
                var pool = PoolState(name: name, location: location)
                pool.block = sections
                pools.append(pool)
                current = pools.count - 1
            }
        case .entry(let entry):
            apply(entry)
        }
    }

    mutating func apply(_ entry: IniEntry) {
        let scope: DirectiveInfo.Scope = current == nil ? .global : .pool
        let lookupName = entry.key == nil ? entry.name : entry.name + "[]"
        guard let spec = DirectiveTable.lookup(lookupName, scope: scope) else {
            sink.error(entry.location, entry.displayName, unknownMessage(entry, lookupName: lookupName, scope: scope))
            return
        }
        let name = spec.info.name
        let input = DirectiveInput(
            entry: entry, directive: entry.key == nil ? name : entry.displayName,
            pool: current.map { pools[$0].config.name }, environment: environment, sink: sink)
        do {
            switch spec.apply {
            case .global(let set):
                if let previous = global.setAt[name], !spec.info.isArray {
                    sink.warning(entry.location, name, "set again (first at \(previous)); the last value wins")
                }
                try set(&global, input)
                global.setAt[name] = entry.location
                global.config.locations[name] = entry.location
            case .pool(let set):
                let index = current!
                if !spec.info.isArray, name != "listen",
                   let previous = pools[index].setAt[name], previous.block == pools[index].block {
                    sink.warning(entry.location, name, "set again (first at \(previous.location)); the last value wins")
                }
                try set(&pools[index], input)
                pools[index].setAt[name] = (entry.location, pools[index].block)
                pools[index].config.locations[name] = entry.location
            case .include:
                return  // handled by IniReader
            }
        } catch {
            sink.error(entry.location, input.directive, error.message)
            if let index = current { pools[index].failed.insert(name) } else { global.failed.insert(name) }
            return
        }
        if !spec.info.implemented {
            sink.warning(entry.location, input.directive, "recognised but not implemented yet by Drover; ignored")
        }
    }

    private func unknownMessage(_ entry: IniEntry, lookupName: String, scope: DirectiveInfo.Scope) -> String {
        let other: DirectiveInfo.Scope = scope == .global ? .pool : .global
        if DirectiveTable.lookup(lookupName, scope: other) != nil {
            return scope == .global
                ? "is a pool directive; it is not allowed in [global] (start a pool section first, e.g. [www])"
                : "is a global directive; it is only allowed in [global]"
        }
        if entry.key != nil, DirectiveTable.lookup(entry.name, scope: scope) != nil {
            return "is not an array directive; write \(entry.name) = value"
        }
        if entry.key == nil, DirectiveTable.lookup(entry.name + "[]", scope: scope) != nil {
            return "needs a key: write \(entry.name)[name] = value"
        }
        return "unknown directive"
    }
}
