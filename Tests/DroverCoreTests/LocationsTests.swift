import Glibc
import XCTest
@testable import DroverCore

final class LocationsTests: XCTestCase {
    private func temporaryDirectory() -> String {
        var template = Array("/tmp/drover-locations-XXXXXX".utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    private func write(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertTrue(FD.writeAll(fd, text))
        close(fd)
    }

    func testCompiledInDefaultsDeriveEveryPath() {
        let (l, warnings) = Locations.resolve(executable: "/nowhere/bin/drover", environment: [:])
        XCTAssertEqual(warnings, [])
        let sysconf = l["sysconfdir"], run = l["rundir"], state = l["localstatedir"]
        XCTAssertEqual(l.configFile, "\(sysconf)/drover/drover.conf")
        XCTAssertEqual(l["pool_dir"], "\(sysconf)/drover/pool.d")
        XCTAssertEqual(l["pid_file"], "\(run)/drover/drover.pid")
        XCTAssertEqual(l["control_socket"], "\(run)/drover/drover.ctl")
        XCTAssertEqual(l["log_dir"], "\(state)/log/drover")
        XCTAssertTrue(l.entries.allSatisfy { $0.source == "compiled in" })
        XCTAssertEqual(l.entries.map(\.key), Locations.keys)
    }

    func testLocationsFileBesideTheBinaryMovesBasesAndSetsKeys() {
        let dir = temporaryDirectory()
        defer { unlink("\(dir)/drover.locations"); rmdir(dir) }
        write("\(dir)/drover.locations", "# relocated\n  sysconfdir = /opt/x/etc \n; comment\npid_file=/var/run/x.pid\nnonsense = 1\n")
        let (l, warnings) = Locations.resolve(executable: "\(dir)/drover", environment: [:])
        XCTAssertEqual(l.configFile, "/opt/x/etc/drover/drover.conf")
        XCTAssertEqual(l["pid_file"], "/var/run/x.pid")
        XCTAssertEqual(l.entries.first { $0.key == "config_file" }?.source, "locations file \(dir)/drover.locations")
        XCTAssertEqual(l.entries.first { $0.key == "log_dir" }?.source, "compiled in")
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("unknown location 'nonsense'"), warnings[0])
    }

    func testBrokenLocationsFileIsIgnoredWithAWarning() {
        let dir = temporaryDirectory()
        defer { unlink("\(dir)/bad"); rmdir(dir) }
        write("\(dir)/bad", "sysconfdir /no/equals\n")
        let (l, warnings) = Locations.resolve(executable: "/nowhere/drover", environment: ["DROVER_LOCATIONS": "\(dir)/bad"])
        XCTAssertEqual(warnings, ["\(dir)/bad: line 1: expected key = value; using the other locations"])
        XCTAssertEqual(l.entries.first { $0.key == "sysconfdir" }?.source, "compiled in")
    }

    func testSourceTreeIsFoundAboveTheBuildDirectory() {
        let root = temporaryDirectory()
        for d in ["Config", ".build", ".build/x86_64-unknown-linux-gnu", ".build/x86_64-unknown-linux-gnu/debug"] {
            mkdir("\(root)/\(d)", 0o755)
        }
        write("\(root)/Package.swift", "")
        write("\(root)/Config/drover.conf", "")
        defer {
            unlink("\(root)/Package.swift"); unlink("\(root)/Config/drover.conf")
            for d in [".build/x86_64-unknown-linux-gnu/debug", ".build/x86_64-unknown-linux-gnu", ".build", "Config", ""] { rmdir("\(root)/\(d)") }
        }
        let (l, _) = Locations.resolve(executable: "\(root)/.build/x86_64-unknown-linux-gnu/debug/drover", environment: [:])
        XCTAssertEqual(l.configFile, "\(root)/Config/drover.conf")
        XCTAssertEqual(l.entries.first { $0.key == "config_file" }?.source, "source tree \(root)")
    }

    func testFlagOverridesOneEntry() {
        var (l, _) = Locations.resolve(executable: nil, environment: [:])
        l.override("config_file", "/x.conf", by: "-y")
        XCTAssertEqual(l.configFile, "/x.conf")
        XCTAssertEqual(l.entries.first { $0.key == "config_file" }?.source, "flag -y")
    }
}
