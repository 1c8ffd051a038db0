import XCTest
@testable import FastCGI

/// Splits a byte stream into records with the decoder, failing the test on error.
func decodeAll(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [Record] {
    var decoder = RecordDecoder()
    decoder.feed(bytes)
    var records: [Record] = []
    do {
        while let record = try decoder.next() { records.append(record) }
    } catch {
        XCTFail("decode failed: \(error)", file: file, line: line)
    }
    XCTAssertEqual(decoder.bufferedByteCount, 0, "bytes left over", file: file, line: line)
    return records
}

final class RecordHeaderTests: XCTestCase {
    func testHeaderRoundTrip() throws {
        let header = RecordHeader(type: .stdout, requestID: 0x1234, contentLength: 0xABCD, paddingLength: 3)
        var bytes = [UInt8](repeating: 0xFF, count: 8)
        bytes.withUnsafeMutableBytes { header.write(to: $0.baseAddress!) }
        XCTAssertEqual(bytes, [1, 6, 0x12, 0x34, 0xAB, 0xCD, 3, 0])
        XCTAssertEqual(header.bytes, bytes)
        let parsed = try bytes.withUnsafeBytes { raw throws(FastCGIError) in try RecordHeader(parsing: raw) }
        XCTAssertEqual(parsed, header)
        XCTAssertEqual(parsed.recordLength, 8 + 0xABCD + 3)
    }

    func testHeaderParsingIgnoresTrailingBytesAndReservedByte() throws {
        let bytes: [UInt8] = [1, 1, 0, 1, 0, 8, 0, 0x55, 9, 9, 9]
        let parsed = try bytes.withUnsafeBytes { raw throws(FastCGIError) in try RecordHeader(parsing: raw) }
        XCTAssertEqual(parsed.type, .beginRequest)
        XCTAssertEqual(parsed.requestID, 1)
        XCTAssertEqual(parsed.contentLength, 8)
        XCTAssertEqual(parsed.paddingLength, 0)
    }

    func testHeaderRejectsShortInput() {
        for length in 0 ..< 8 {
            let bytes = [UInt8]([1, 6, 0, 1, 0, 0, 0, 0].prefix(length))
            XCTAssertThrowsError(try bytes.withUnsafeBytes { raw throws(FastCGIError) in try RecordHeader(parsing: raw) }) {
                XCTAssertEqual($0 as? FastCGIError, .truncated)
            }
        }
    }

    func testHeaderRejectsWrongVersion() {
        for version: UInt8 in [0, 2, 0x47, 0xFF] {
            let bytes: [UInt8] = [version, 6, 0, 1, 0, 0, 0, 0]
            XCTAssertThrowsError(try bytes.withUnsafeBytes { raw throws(FastCGIError) in try RecordHeader(parsing: raw) }) {
                XCTAssertEqual($0 as? FastCGIError, .unsupportedVersion(version))
            }
        }
    }

    func testRecordTypeNames() {
        XCTAssertEqual(RecordType.beginRequest.description, "BEGIN_REQUEST")
        XCTAssertEqual(RecordType.unknownType.description, "UNKNOWN_TYPE")
        XCTAssertEqual(RecordType(rawValue: 42).description, "type 42")
        XCTAssertTrue(RecordType.getValues.isManagement)
        XCTAssertTrue(RecordType.getValuesResult.isManagement)
        XCTAssertTrue(RecordType.unknownType.isManagement)
        XCTAssertFalse(RecordType.stdout.isManagement)
        XCTAssertFalse(RecordType(rawValue: 12).isKnown)
    }
}

final class RecordBodyTests: XCTestCase {
    func testBeginRequestRoundTrip() throws {
        for (role, keep) in [(Role.responder, true), (.authorizer, false), (.filter, true), (Role(rawValue: 0xBEEF), false)] {
            let body = BeginRequestBody(role: role, keepConnection: keep)
            let bytes = body.encoded()
            XCTAssertEqual(bytes.count, 8)
            let parsed = try bytes.withUnsafeBytes { raw throws(FastCGIError) in try BeginRequestBody(parsing: raw) }
            XCTAssertEqual(parsed.role, role)
            XCTAssertEqual(parsed.keepConnection, keep)
        }
        XCTAssertEqual(BeginRequestBody(role: .responder, keepConnection: true).encoded(), [0, 1, 1, 0, 0, 0, 0, 0])
    }

    func testKeepConnectionIsBitOne() throws {
        let bytes: [UInt8] = [0, 1, 0xFE, 0, 0, 0, 0, 0]
        var parsed = try bytes.withUnsafeBytes { raw throws(FastCGIError) in try BeginRequestBody(parsing: raw) }
        XCTAssertFalse(parsed.keepConnection)
        parsed.keepConnection = true
        XCTAssertEqual(parsed.flags, 0xFF)
        parsed.keepConnection = false
        XCTAssertEqual(parsed.flags, 0xFE)
    }

    func testBeginRequestWithWrongBodyLengthIsRejected() {
        for length in [0, 1, 7, 9, 16] {
            let bytes = [UInt8](repeating: 1, count: length)
            XCTAssertThrowsError(try bytes.withUnsafeBytes { raw throws(FastCGIError) in try BeginRequestBody(parsing: raw) }) {
                XCTAssertEqual($0 as? FastCGIError, .invalidBody(.beginRequest))
            }
        }
    }

    func testEndRequestRoundTrip() throws {
        let body = EndRequestBody(appStatus: 0xDEAD_BEEF, protocolStatus: .overloaded)
        XCTAssertEqual(body.encoded(), [0xDE, 0xAD, 0xBE, 0xEF, 2, 0, 0, 0])
        let parsed = try body.encoded().withUnsafeBytes { raw throws(FastCGIError) in try EndRequestBody(parsing: raw) }
        XCTAssertEqual(parsed, body)
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 5).withUnsafeBytes { raw throws(FastCGIError) in
            try EndRequestBody(parsing: raw)
        }) { XCTAssertEqual($0 as? FastCGIError, .invalidBody(.endRequest)) }
    }

    func testUnknownTypeBody() throws {
        let parsed = try UnknownTypeBody(type: 77).encoded().withUnsafeBytes { raw throws(FastCGIError) in
            try UnknownTypeBody(parsing: raw)
        }
        XCTAssertEqual(parsed.type, 77)
    }

    func testErrorDescriptions() {
        XCTAssertTrue(FastCGIError.unsupportedVersion(2).description.contains("version 2"))
        XCTAssertTrue(FastCGIError.invalidBody(.beginRequest).description.contains("BEGIN_REQUEST"))
    }
}

final class RecordEncoderTests: XCTestCase {
    func testSmallRecordIsPaddedToEight() {
        var out: [UInt8] = []
        RecordEncoder.append(.stdout, requestID: 7, content: [1, 2, 3], to: &out)
        XCTAssertEqual(out, [1, 6, 0, 7, 0, 3, 5, 0, 1, 2, 3, 0, 0, 0, 0, 0])
        XCTAssertEqual(out.count % 8, 0)
    }

    func testPaddingForEveryLengthModuloEight() {
        for length in 0 ..< 40 {
            var out: [UInt8] = []
            RecordEncoder.append(.stdin, requestID: 1, content: [UInt8](repeating: 0xAA, count: length), to: &out)
            XCTAssertEqual(out.count % 8, 0, "length \(length)")
            let records = decodeAll(out)
            XCTAssertEqual(records.count, 1)
            XCTAssertEqual(records[0].content.count, length)
            XCTAssertEqual(Int(records[0].header.paddingLength), (8 - length % 8) % 8)
        }
    }

    func testEmptyContentIsOneEmptyRecord() {
        var a: [UInt8] = []
        RecordEncoder.append(.stdout, requestID: 3, content: [], to: &a)
        var b: [UInt8] = []
        RecordEncoder.appendEmpty(.stdout, requestID: 3, to: &b)
        XCTAssertEqual(a, [1, 6, 0, 3, 0, 0, 0, 0])
        XCTAssertEqual(a, b)
    }

    func testMaximumContentFitsOneRecord() {
        var out: [UInt8] = []
        let content = (0 ..< 65535).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        RecordEncoder.append(.stdout, requestID: 1, content: content, to: &out)
        let records = decodeAll(out)
        XCTAssertEqual(records.count, 1)
        XCTAssertEqual(records[0].header.contentLength, 65535)
        XCTAssertEqual(records[0].header.paddingLength, 1)
        XCTAssertEqual(records[0].content, content)
    }

    func testLongContentIsSplitIntoSeveralRecords() {
        for length in [65536, 65528 * 2, 200_000, 1_000_003] {
            var out: [UInt8] = [0xEE]  // appending keeps what is already there
            let content = (0 ..< length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
            RecordEncoder.append(.stdout, requestID: 9, content: content, to: &out)
            XCTAssertEqual(out.first, 0xEE)
            let records = decodeAll(Array(out.dropFirst()))
            XCTAssertEqual(records.count, (length + 65527) / 65528, "length \(length)")
            XCTAssertTrue(records.allSatisfy { $0.type == .stdout && $0.requestID == 9 })
            XCTAssertTrue(records.allSatisfy { $0.content.count <= 65535 && !$0.content.isEmpty })
            XCTAssertTrue(records.dropLast().allSatisfy { $0.content.count == 65528 && $0.header.paddingLength == 0 })
            XCTAssertEqual(records.flatMap(\.content), content)
            XCTAssertEqual((out.count - 1) % 8, 0)
        }
    }

    func testBeginAndEndRequestBytes() {
        var out: [UInt8] = []
        RecordEncoder.appendBeginRequest(requestID: 1, role: .responder, keepConnection: true, to: &out)
        RecordEncoder.appendEndRequest(requestID: 1, appStatus: 3, protocolStatus: .requestComplete, to: &out)
        RecordEncoder.appendAbortRequest(requestID: 2, to: &out)
        XCTAssertEqual(out, [
            1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0,
            1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0,
            1, 2, 0, 2, 0, 0, 0, 0,
        ])
    }

    func testParamsEndWithEmptyRecordAndRoundTrip() throws {
        var out: [UInt8] = []
        let params = [("SCRIPT_FILENAME", "/var/www/index.php"), ("QUERY_STRING", ""), ("REQUEST_METHOD", "GET")]
        RecordEncoder.appendParams(requestID: 5, params: params, to: &out)
        let records = decodeAll(out)
        XCTAssertEqual(records.count, 2)
        XCTAssertEqual(records.last?.content, [])
        XCTAssertEqual(records.last?.type, .params)
        let decoded = try NameValuePairs.decode(records[0].content)
        XCTAssertEqual(decoded.map(\.name), params.map(\.0))
        XCTAssertEqual(decoded.map(\.value), params.map(\.1))
    }

    func testParamsKeepPairsWholeWithinRecords() throws {
        // 300 pairs of ~1 KiB: more than one record's worth, none may be cut.
        let params = (0 ..< 300).map { ("HTTP_X_HEADER_\($0)", String(repeating: "v", count: 1000 + $0)) }
        var out: [UInt8] = []
        RecordEncoder.appendParams(requestID: 1, params: params, to: &out)
        let records = decodeAll(out)
        XCTAssertGreaterThan(records.count, 3)
        XCTAssertEqual(records.last?.content.count, 0)
        var names: [String] = []
        for record in records.dropLast() {
            XCTAssertLessThanOrEqual(record.content.count, 65535)
            // Each record parses on its own, as PHP's SAPI does it.
            names += try NameValuePairs.decode(record.content).map(\.name)
        }
        XCTAssertEqual(names, params.map(\.0))
    }

    func testParamsWithPairLongerThanARecord() throws {
        let params = [("A", "1"), ("BIG", String(repeating: "x", count: 150_000)), ("B", "2")]
        var out: [UInt8] = []
        RecordEncoder.appendParams(requestID: 1, params: params, to: &out)
        let records = decodeAll(out)
        let stream = records.dropLast().flatMap(\.content)
        let decoded = try NameValuePairs.decode(stream)
        XCTAssertEqual(decoded.map(\.name), ["A", "BIG", "B"])
        XCTAssertEqual(decoded[1].value.count, 150_000)
    }

    func testEmptyParams() {
        var out: [UInt8] = []
        RecordEncoder.appendParams(requestID: 1, params: [], to: &out)
        XCTAssertEqual(out, [1, 4, 0, 1, 0, 0, 0, 0])
    }

    func testManagementRecords() throws {
        var out: [UInt8] = []
        RecordEncoder.appendGetValues(names: ["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS"], to: &out)
        RecordEncoder.appendGetValuesResult(values: [("FCGI_MAX_CONNS", "10"), ("FCGI_MPXS_CONNS", "0")], to: &out)
        RecordEncoder.appendUnknownType(99, to: &out)
        let records = decodeAll(out)
        XCTAssertEqual(records.map(\.type), [.getValues, .getValuesResult, .unknownType])
        XCTAssertTrue(records.allSatisfy { $0.requestID == FastCGIConstants.nullRequestID })
        XCTAssertEqual(try NameValuePairs.decode(records[0].content).map(\.value), ["", ""])
        XCTAssertEqual(try NameValuePairs.decode(records[1].content).map(\.value), ["10", "0"])
        XCTAssertEqual(records[2].content, [99, 0, 0, 0, 0, 0, 0, 0])
        var empty: [UInt8] = []
        RecordEncoder.appendGetValuesResult(values: [], to: &empty)
        XCTAssertEqual(empty, [1, 10, 0, 0, 0, 0, 0, 0])
    }
}
