import DroverConfig
import Foundation
import XCTest

/// Debian's stock php-fpm configuration must load unchanged.
final class StockConfigTests: XCTestCase {
    static let stock = "/etc/php/8.2/fpm/php-fpm.conf"

    func testDebianStockPHPFPMConfigLoads() throws {
        guard FileManager.default.fileExists(atPath: Self.stock) else {
            throw XCTSkip("\(Self.stock) is not installed (package php8.2-fpm)")
        }
        let r = load(Self.stock, environment: ProcessInfo.processInfo.environment)
        XCTAssertEqual(r.errors.count, 0, r.errorText)
        let config = try XCTUnwrap(r.config)
        XCTAssertEqual(config.files.first, Self.stock)
        XCTAssertTrue(config.files.contains("/etc/php/8.2/fpm/pool.d/www.conf"), "\(config.files)")
        XCTAssertEqual(config.global.pid, "/run/php/php8.2-fpm.pid")
        XCTAssertEqual(config.global.errorLog, "/var/log/php8.2-fpm.log")
        let www = try XCTUnwrap(config.pools.first { $0.name == "www" })
        XCTAssertEqual(www.user, "www-data")
        XCTAssertEqual(www.group, "www-data")
        XCTAssertEqual(www.listen, [.unix(path: "/run/php/php8.2-fpm.sock")])
        XCTAssertEqual(www.listenOwner, "www-data")
        XCTAssertEqual(www.pm, .dynamic)
        XCTAssertEqual(www.maxChildren, 5)
        XCTAssertEqual(www.startServers, 2)
        XCTAssertEqual(www.minSpareServers, 1)
        XCTAssertEqual(www.maxSpareServers, 3)
        XCTAssertTrue(www.command.isEmpty)
        // Every warning points into a real file and line.
        for w in r.warnings {
            XCTAssertNotNil(w.location, "\(w)")
            XCTAssertGreaterThan(w.location?.line ?? 0, 0, "\(w)")
        }
        // The dump shows the effective values.
        let dump = ConfigLoader.dump(config)
        XCTAssertTrue(dump.contains("\tlisten = /run/php/php8.2-fpm.sock"), dump)
        XCTAssertTrue(dump.contains("[www]"), dump)
    }
}
