// libFuzzer target for the FastCGI codec (Sources/FastCGI).
//
// One input is a byte stream as a web server (or a hostile client) would
// send it to a worker. It goes through every parser the worker and the
// tools run on such bytes, and the results are cross-checked, so that
// besides traps (out-of-bounds, overflow, precondition) a parser that
// silently disagrees with another is reported too:
//
//  1. Worker-style framing (as Sources/DroverWorker/RecordBuffer.swift does:
//     RecordHeader(parsing:) on the raw buffer, then the content in place),
//     with BEGIN_REQUEST / END_REQUEST / UNKNOWN_TYPE bodies parsed, PARAMS
//     and GET_VALUES content walked pair by pair both per record (as
//     Relay.swift does) and as the concatenated stream (as RequestParams
//     does), and STDOUT fed to CGIResponseHead.
//  2. RecordDecoder, fed the same bytes in chunks whose sizes come from the
//     input: it must frame exactly the records the worker-style framing did.
//  3. Round trips: records re-encoded by RecordEncoder decode to the same
//     records; name-value pairs re-encoded decode to the same pairs.
//  4. CGIResponseHead.parse / headerEnd / statusCode on the raw bytes must
//     agree with each other.
import CLibFuzzer
import FastCGI

/// Stops the run with a message libFuzzer shows next to the stack.
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #file, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant: \(message())", file: file, line: line) }
}

/// A framed record, for comparing the two framers.
struct Framed: Equatable {
    var type: UInt8
    var requestID: UInt16
    var content: [UInt8]
    var padding: UInt8
}

/// Walks `bytes` as name-value pairs three ways (nextPair, forEach, decode)
/// and checks they agree; returns the pairs (raw) up to the first error.
func walkPairs(_ bytes: UnsafeRawBufferPointer) -> (pairs: [([UInt8], [UInt8])], failed: Bool) {
    var viaNext: [([UInt8], [UInt8])] = []
    var failed = false
    var offset = 0
    do {
        while let pair = try NameValuePairs.nextPair(in: bytes, at: &offset) {
            check(pair.name.lowerBound >= 0 && pair.value.upperBound <= bytes.count, "pair range out of bounds")
            check(pair.name.upperBound == pair.value.lowerBound, "name and value not adjacent")
            check(offset == pair.value.upperBound && offset <= bytes.count, "offset not past the pair")
            viaNext.append((Array(bytes[pair.name]), Array(bytes[pair.value])))
        }
    } catch {
        failed = true
    }

    var viaForEach: [([UInt8], [UInt8])] = []
    var forEachFailed = false
    do {
        try NameValuePairs.forEach(in: bytes) { name, value in
            viaForEach.append((Array(name), Array(value)))
        }
    } catch {
        forEachFailed = true
    }
    check(failed == forEachFailed, "nextPair and forEach disagree on failure")
    check(viaNext.count == viaForEach.count, "nextPair and forEach found a different number of pairs")
    for (a, b) in zip(viaNext, viaForEach) { check(a.0 == b.0 && a.1 == b.1, "nextPair and forEach disagree") }

    let decoded = try? NameValuePairs.decode(Array(bytes))
    check((decoded == nil) == failed, "decode and nextPair disagree on failure")
    if let decoded { check(decoded.count == viaNext.count, "decode found a different number of pairs") }

    // Round trip: what parsed must re-encode to something that parses the same.
    if !failed {
        var encoded: [UInt8] = []
        for (name, value) in viaNext {
            check(NameValuePairs.encodedLength(nameLength: name.count, valueLength: value.count)
                  >= name.count + value.count + 2, "encodedLength too small")
            NameValuePairs.append(name: name, value: value, to: &encoded)
        }
        let again = encoded.withUnsafeBytes { raw -> [([UInt8], [UInt8])] in
            var out: [([UInt8], [UInt8])] = []
            var o = 0
            do {
                while let p = try NameValuePairs.nextPair(in: raw, at: &o) {
                    out.append((Array(raw[p.name]), Array(raw[p.value])))
                }
            } catch {
                check(false, "re-encoded pairs do not parse: \(error)")
            }
            return out
        }
        check(again.count == viaNext.count, "pair round trip changed the count")
        for (a, b) in zip(again, viaNext) { check(a.0 == b.0 && a.1 == b.1, "pair round trip changed a pair") }
    }
    return (viaNext, failed)
}

/// CGIResponseHead's three entry points must agree.
func checkResponseHead(_ bytes: UnsafeRawBufferPointer) {
    let parsed = CGIResponseHead.parse(bytes)
    let end = CGIResponseHead.headerEnd(bytes)
    let status = CGIResponseHead.statusCode(bytes)
    check(parsed?.headerEnd == end, "parse and headerEnd disagree")
    check(parsed?.statusCode == status, "parse and statusCode disagree")
    if let parsed {
        check(parsed.headerEnd > 0 && parsed.headerEnd <= bytes.count, "headerEnd out of bounds")
        check((100...999).contains(parsed.statusCode), "status \(parsed.statusCode) out of range")
        // The head alone must parse the same (nothing after it is looked at).
        let head = UnsafeRawBufferPointer(rebasing: bytes[0 ..< parsed.headerEnd])
        let again = CGIResponseHead.parse(head)
        check(again?.headerEnd == parsed.headerEnd && again?.statusCode == parsed.statusCode,
              "the head alone parses differently")
    }
}

/// Frames records the way the worker does: header parsed in place, content
/// used in place, stop at the first bad header or incomplete record.
func frameLikeWorker(_ bytes: UnsafeRawBufferPointer) -> (records: [Framed], error: Bool) {
    var records: [Framed] = []
    var ready = 0
    var params: [UInt8] = []
    var stdout: [UInt8] = []
    while bytes.count - ready >= FastCGIConstants.headerLength {
        let header: RecordHeader
        do {
            header = try RecordHeader(parsing: UnsafeRawBufferPointer(
                rebasing: bytes[ready ..< ready + FastCGIConstants.headerLength]))
        } catch {
            return (records, true)
        }
        check(header.version == FastCGIConstants.version, "accepted version \(header.version)")
        check(header.bytes.count == FastCGIConstants.headerLength, "header bytes")
        check(Array(header.bytes[0 ..< 7]) == Array(bytes[ready ..< ready + 7]), "header does not re-encode to its bytes")
        guard bytes.count - ready >= header.recordLength else { break }
        let content = UnsafeRawBufferPointer(
            rebasing: bytes[ready + FastCGIConstants.headerLength ..< ready + FastCGIConstants.headerLength + Int(header.contentLength)])
        records.append(Framed(type: header.type.rawValue, requestID: header.requestID,
                              content: Array(content), padding: header.paddingLength))
        switch header.type {
        case .beginRequest:
            if let body = try? BeginRequestBody(parsing: content) {
                check(content.count == BeginRequestBody.length, "BEGIN_REQUEST body of \(content.count) bytes accepted")
                let encoded = body.encoded()
                check(encoded.count == BeginRequestBody.length, "BEGIN_REQUEST re-encodes to \(encoded.count) bytes")
                check(Array(encoded[0 ..< 3]) == Array(content[0 ..< 3]), "BEGIN_REQUEST round trip")
                check(body.keepConnection == (content[2] & 1 != 0), "keepConnection flag")
                _ = body.role.description
            } else {
                check(content.count != BeginRequestBody.length, "8-byte BEGIN_REQUEST body rejected")
            }
        case .endRequest:
            if let body = try? EndRequestBody(parsing: content) {
                check(Array(body.encoded()[0 ..< 5]) == Array(content[0 ..< 5]), "END_REQUEST round trip")
            }
        case .unknownType:
            if let body = try? UnknownTypeBody(parsing: content) {
                check(body.encoded()[0] == content[0], "UNKNOWN_TYPE round trip")
            }
        case .params:
            // Per record, as Relay.swift looks for names in each PARAMS record.
            _ = walkPairs(content)
            if content.isEmpty {
                // End of the stream: the whole block, as RequestParams parses it.
                params.withUnsafeBytes { _ = walkPairs($0) }
                params.removeAll()
            } else {
                params.append(contentsOf: content)
            }
        case .getValues, .getValuesResult:
            _ = walkPairs(content)
        case .stdout:
            stdout.append(contentsOf: content)
            stdout.withUnsafeBytes { checkResponseHead($0) }
        default:
            _ = header.type.description
        }
        ready += header.recordLength
    }
    return (records, false)
}

/// Feeds `bytes` to a RecordDecoder in chunks whose sizes are derived from
/// the bytes themselves, reading records after every chunk.
func frameWithDecoder(_ bytes: UnsafeRawBufferPointer) -> (records: [Framed], error: Bool) {
    var decoder = RecordDecoder()
    var records: [Framed] = []
    var offset = 0
    var seed = UInt32(truncatingIfNeeded: bytes.count) &* 2654435761
    for b in bytes.prefix(16) { seed = (seed ^ UInt32(b)) &* 16777619 }
    while offset < bytes.count {
        seed = seed &* 1103515245 &+ 12345
        let chunk = min(bytes.count - offset, Int((seed >> 16) % 97) + 1)
        decoder.feed(UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + chunk]))
        offset += chunk
        while true {
            let record: Record?
            do {
                record = try decoder.next()
            } catch {
                // An error is final: asking again must throw again.
                let again = try? decoder.next()
                check(again == nil, "decoder recovered after an error")
                return (records, true)
            }
            guard let record else { break }
            check(record.content.count == Int(record.header.contentLength), "content length mismatch")
            records.append(Framed(type: record.type.rawValue, requestID: record.requestID,
                                  content: record.content, padding: record.header.paddingLength))
        }
        check(decoder.bufferedByteCount >= 0 && decoder.bufferedByteCount <= offset, "bufferedByteCount \(decoder.bufferedByteCount)")
    }
    return (records, false)
}

/// Re-encodes records with RecordEncoder and decodes them again.
func checkEncoderRoundTrip(_ records: [Framed]) {
    var encoded: [UInt8] = []
    for r in records {
        RecordEncoder.append(RecordType(rawValue: r.type), requestID: r.requestID, content: r.content, to: &encoded)
    }
    check(encoded.count % 8 == 0, "encoder output not padded to 8")
    var decoder = RecordDecoder()
    decoder.feed(encoded)
    var index = 0
    do {
        while let record = try decoder.next() {
            check(index < records.count, "round trip produced extra records")
            let r = records[index]
            check(record.type.rawValue == r.type && record.requestID == r.requestID && record.content == r.content,
                  "record round trip changed record \(index)")
            index += 1
        }
    } catch {
        check(false, "re-encoded records do not decode: \(error)")
    }
    check(index == records.count, "round trip lost records")
    check(decoder.bufferedByteCount == 0, "round trip left bytes")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFastCGI(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)

    let worker = frameLikeWorker(bytes)
    let decoded = frameWithDecoder(bytes)
    check(worker.error == decoded.error, "worker framing and RecordDecoder disagree on the error")
    check(worker.records == decoded.records,
          "worker framing found \(worker.records.count) records, RecordDecoder \(decoded.records.count)")
    checkEncoderRoundTrip(worker.records)

    // The raw bytes as a CGI response head and as one params block.
    checkResponseHead(bytes)
    _ = walkPairs(bytes)
    return 0
}

/// main(): SwiftPM links `FuzzFastCGI_main` as the program's entry point on
/// Linux, so start libFuzzer's driver from it (same flags as libFuzzer's main).
@_cdecl("FuzzFastCGI_main")
public func fuzzFastCGIMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzFastCGI(data, size) }
}
